package bos

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
)

// Activities restore and check BOS session templates.
type Activities struct{ CSM *activities.CSM }

// namedRestore maps restore-bos-templates's contract name (internal/api)
// to its implementation; its check after the gate is check-bos-templates's
// activity (namedCheck).
func namedRestore(_ *activities.Kube, c *activities.CSM) map[string]any {
	return map[string]any{api.ActivityRestoreSessionTemplates: (&Activities{CSM: c}).RestoreSessionTemplates}
}

// RestoreTemplatesRequest carries BOS session templates as BOS returned
// them when the snapshot was taken.
type RestoreTemplatesRequest struct {
	Templates []json.RawMessage `json:"templates"`
	// APIs are the API versions of the release the run acts on: the
	// templates are put back through BOS APIs.BOSVersion().
	APIs api.APIVersions `json:"apis,omitzero"`
	// SnapshotAPIs are the versions the snapshot read the templates through
	// (zero: v2, what snapshots recorded before releases were modelled).
	// v1 templates restored through BOS v2 are converted: the members v2
	// does not have are dropped, and the result lists them. v2 templates
	// cannot go back into BOS v1: that is refused before anything changes.
	SnapshotAPIs api.APIVersions `json:"snapshotApis,omitzero"`
}

// ErrTemplateAPIMismatch: the snapshot's templates were read through
// another BOS API version than the one the run restores them through.
const ErrTemplateAPIMismatch = "SnapshotBOSAPIMismatch"

// ErrTemplatesRefused: BOS refused to store saved templates. The restore
// fails rather than reporting them as merely invalid: they are not back.
const ErrTemplatesRefused = "SessionTemplatesRefused"

// TemplateConversion names the members dropped from one template to make
// it a BOS v2 template.
type TemplateConversion struct {
	Name    string   `json:"name"`
	Dropped []string `json:"dropped"`
}

// TemplateProblem is a template BOS refused or does not find valid. Name is
// the template's name, or tenant/name for a tenant's template.
type TemplateProblem struct {
	Name    string `json:"name"`
	Message string `json:"message"`
}

// RestoreTemplatesResult says what happened to each template: put back
// (Restored), already as saved (Unchanged), and, whichever of the two, not
// valid according to BOS (Invalid) or valid with a warning (Warnings).
// Converted lists what a v1→v2 conversion dropped. On BOS v1, which has no
// validation endpoint, Invalid holds the templates that fail the checks
// that need no other service (csm.CheckTemplate) and Unvalidated says so.
type RestoreTemplatesResult struct {
	activities.Outcome
	Restored    []string             `json:"restored,omitempty"`
	Unchanged   []string             `json:"unchanged,omitempty"`
	Invalid     []TemplateProblem    `json:"invalid,omitempty"`
	Warnings    []TemplateProblem    `json:"warnings,omitempty"`
	Converted   []TemplateConversion `json:"converted,omitempty"`
	Unvalidated string               `json:"unvalidated,omitempty"`
}

// templateProgress is kept in heartbeat details, so that a retried restore
// skips the templates an earlier attempt finished and still reports them.
type templateProgress struct {
	Progress  string            `json:"progress"` // "k/n templates", for the Web UI
	Done      int               `json:"done"`
	Restored  []string          `json:"restored,omitempty"`
	Unchanged []string          `json:"unchanged,omitempty"`
	Invalid   []TemplateProblem `json:"invalid,omitempty"`
	Warnings  []TemplateProblem `json:"warnings,omitempty"`
	Refused   []TemplateProblem `json:"refused,omitempty"`
}

// serverSetTemplateFields are written by BOS, not by whoever made the
// template: links are generated on every read and the tenant comes from the
// Cray-Tenant-Name header. They are left out of the PUT body and of the
// comparison.
var serverSetTemplateFields = []string{"links", "tenant"}

type savedTemplate struct {
	name, tenant string
	fields       map[string]any // the saved JSON without server-set fields
	tmpl         csm.SessionTemplate
}

func (t savedTemplate) label() string {
	if t.tenant != "" {
		return t.tenant + "/" + t.name
	}
	return t.name
}

// bosV1Unvalidated is what a restore through BOS v1 reports about
// validation, which that API does not offer.
const bosV1Unvalidated = "BOS v1 (CSM 1.0, 1.2) has no template validation endpoint: each template was checked here for boot sets with path, type and nodes; whether its boot artifacts exist shows only when a session uses it"

// RestoreSessionTemplates puts saved BOS session templates back through
// the BOS API version of req.APIs. A template BOS already holds as saved is
// left alone, any other is put back; then each is checked (v2: BOS's
// validation; v1: csm.CheckTemplate), and the ones found invalid (or that
// BOS refuses to store) are reported with the reason rather than failing
// the step, since they may have been invalid before the rebuild too.
// Templates read through BOS v1 and restored through v2 (the release was
// upgraded in between) are converted, and what was dropped is reported;
// v2 templates are not restored into BOS v1: refused before anything changes.
func (a *Activities) RestoreSessionTemplates(ctx context.Context, req RestoreTemplatesRequest) (RestoreTemplatesResult, error) {
	cl, err := a.CSM.APIClient()
	if err != nil {
		return RestoreTemplatesResult{}, err
	}
	cl = cl.WithAPIs(req.APIs)
	from, to := req.SnapshotAPIs.BOSVersion(), req.APIs.BOSVersion()
	switch {
	case from == to, from == api.APIv1 && to == api.APIv2:
	default:
		return RestoreTemplatesResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"the snapshot's %d session templates were read through BOS %s and this run restores through BOS %s: a v2 template cannot be turned back into a v1 one (v2 boot sets have members v1 lacks, and the release is older than the snapshot); restore them by hand or take a snapshot on this release; nothing was changed",
			len(req.Templates), from, to), ErrTemplateAPIMismatch, nil)
	}
	saved := make([]savedTemplate, len(req.Templates))
	var converted []TemplateConversion
	for i, raw := range req.Templates {
		if saved[i], err = parseSavedTemplate(raw); err != nil {
			return RestoreTemplatesResult{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("snapshot session template %d: %v; take the snapshot again", i+1, err), api.InvalidRequestError, nil)
		}
		if from != to {
			var dropped []string
			if saved[i], dropped, err = convertSaved(saved[i]); err != nil {
				return RestoreTemplatesResult{}, temporal.NewNonRetryableApplicationError(
					fmt.Sprintf("snapshot session template %s: %v", saved[i].label(), err), api.InvalidRequestError, nil)
			}
			if len(dropped) > 0 {
				converted = append(converted, TemplateConversion{Name: saved[i].label(), Dropped: dropped})
			}
		}
	}
	var p templateProgress
	if activity.HasHeartbeatDetails(ctx) {
		if err := activity.GetHeartbeatDetails(ctx, &p); err != nil || p.Done > len(saved) {
			p = templateProgress{}
		}
	}
	resumed := p.Done
	for i := p.Done; i < len(saved); i++ {
		t := saved[i]
		tctx := csm.WithTenant(ctx, t.tenant)
		changed, refused, err := restoreTemplate(tctx, cl, t)
		if err != nil {
			return RestoreTemplatesResult{}, activities.CSMError(err)
		}
		switch {
		case refused != "":
			p.Refused = append(p.Refused, TemplateProblem{Name: t.label(), Message: refused})
		default:
			if changed {
				p.Restored = append(p.Restored, t.label())
			} else {
				p.Unchanged = append(p.Unchanged, t.label())
			}
			if to == api.APIv1 {
				if msg := csm.CheckTemplate(t.tmpl); msg != "" {
					p.Invalid = append(p.Invalid, TemplateProblem{Name: t.label(), Message: msg})
				}
				break
			}
			v, err := cl.ValidateSessionTemplate(tctx, t.name)
			if err != nil {
				return RestoreTemplatesResult{}, activities.CSMError(err)
			}
			switch v.Verdict {
			case csm.TemplateWarning:
				p.Warnings = append(p.Warnings, TemplateProblem{Name: t.label(), Message: v.Message})
			case csm.TemplateInvalid:
				p.Invalid = append(p.Invalid, TemplateProblem{Name: t.label(), Message: v.Message})
			}
		}
		p.Done = i + 1
		p.Progress = fmt.Sprintf("%d/%d templates", p.Done, len(saved))
		activities.RecordHeartbeat(ctx, p)
	}
	msg := fmt.Sprintf("%d BOS session templates (BOS %s): %d restored, %d already as saved", len(saved), to, len(p.Restored), len(p.Unchanged))
	if len(converted) > 0 {
		msg += fmt.Sprintf("; %d converted from v1 (members dropped: %s)", len(converted), conversionSummary(converted))
	}
	if len(p.Invalid) > 0 {
		msg += fmt.Sprintf("; %d not valid: %s", len(p.Invalid), problemNames(p.Invalid))
	}
	if len(p.Warnings) > 0 {
		msg += fmt.Sprintf("; %d valid with warnings: %s", len(p.Warnings), problemNames(p.Warnings))
	}
	res := RestoreTemplatesResult{Restored: p.Restored, Unchanged: p.Unchanged, Invalid: p.Invalid, Warnings: p.Warnings, Converted: converted}
	if to == api.APIv1 {
		res.Unvalidated = bosV1Unvalidated
		msg += "; " + bosV1Unvalidated
	}
	if resumed > 0 {
		msg += fmt.Sprintf(" (%d done before a retry)", resumed)
	}
	if len(p.Refused) > 0 {
		var why []string
		for _, r := range p.Refused {
			why = append(why, fmt.Sprintf("%s: %s", r.Name, r.Message))
		}
		return RestoreTemplatesResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"BOS refused to store %d of the snapshot's session templates, so they are not back: %s; %s; fix them as the product-stream procedures say and run the bos service again",
			len(p.Refused), strings.Join(why, "; "), msg), ErrTemplatesRefused, nil)
	}
	res.Outcome = activities.NewOutcome(ctx, "%s", msg)
	return res, nil
}

func problemNames(ps []TemplateProblem) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}

func conversionSummary(cs []TemplateConversion) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.Name + ": " + strings.Join(c.Dropped, ", ")
	}
	return strings.Join(parts, "; ")
}

// convertSaved makes a v1 template a v2 one, and what it compares against
// BOS's copy the converted template.
func convertSaved(t savedTemplate) (savedTemplate, []string, error) {
	conv, dropped := csm.ConvertToV2(t.tmpl)
	b, err := json.Marshal(conv)
	if err != nil {
		return t, nil, err
	}
	fields, err := templateFields(b)
	if err != nil {
		return t, nil, err
	}
	fields["name"] = t.name
	t.tmpl, t.fields = conv, fields
	t.tmpl.Name = t.name
	return t, dropped, nil
}

// restoreTemplate PUTs t unless BOS already holds it as saved. refused is
// BOS's reason when it would not store the template (HTTP 400).
func restoreTemplate(ctx context.Context, cl *csm.Client, t savedTemplate) (changed bool, refused string, err error) {
	cur, err := cl.SessionTemplate(ctx, t.name)
	switch {
	case csm.KindOf(err) == csm.NotFound:
	case err != nil:
		return false, "", err
	default:
		b, err := json.Marshal(cur)
		if err != nil {
			return false, "", err
		}
		have, err := templateFields(b)
		if err != nil {
			return false, "", err
		}
		if reflect.DeepEqual(have, t.fields) {
			return false, "", nil
		}
	}
	if _, err := cl.PutSessionTemplate(ctx, t.tmpl); err != nil {
		if csm.KindOf(err) == csm.BadRequest {
			return false, err.Error(), nil
		}
		return false, "", err
	}
	return true, "", nil
}

func parseSavedTemplate(raw json.RawMessage) (savedTemplate, error) {
	var t savedTemplate
	var head struct {
		Name   string `json:"name"`
		Tenant string `json:"tenant"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return t, fmt.Errorf("not a JSON object: %v", err)
	}
	if strings.TrimSpace(head.Name) == "" {
		return t, fmt.Errorf("has no name")
	}
	// Both go into a URL path or a header: refuse what would be mangled there.
	if strings.ContainsAny(head.Name, "\r\n\t") {
		return t, fmt.Errorf("name %q has control characters", head.Name)
	}
	if strings.ContainsAny(head.Tenant, "/ \r\n\t") {
		return t, fmt.Errorf("tenant %q has spaces, '/' or control characters", head.Tenant)
	}
	fields, err := templateFields(raw)
	if err != nil {
		return t, err
	}
	if err := json.Unmarshal(raw, &t.tmpl); err != nil {
		return t, err
	}
	t.tmpl.Tenant, t.tmpl.Links = "", nil
	for _, f := range serverSetTemplateFields {
		delete(t.tmpl.Extra, f)
	}
	t.name, t.tenant, t.fields = head.Name, head.Tenant, fields
	return t, nil
}

// templateFields decodes a template for comparison, without the fields BOS sets.
func templateFields(b []byte) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for _, f := range serverSetTemplateFields {
		delete(m, f)
	}
	return m, nil
}
