package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
)

// RestoreTemplatesRequest carries BOS v2 session templates as BOS returned
// them when the snapshot was taken.
type RestoreTemplatesRequest struct {
	Templates []json.RawMessage `json:"templates"`
}

// TemplateProblem is a template BOS refused or does not find valid. Name is
// the template's name, or tenant/name for a tenant's template.
type TemplateProblem struct {
	Name    string `json:"name"`
	Message string `json:"message"`
}

// RestoreTemplatesResult says what happened to each template: PUT back
// (Restored), already as saved (Unchanged), and, whichever of the two, not
// valid according to BOS (Invalid).
type RestoreTemplatesResult struct {
	Outcome
	Restored  []string          `json:"restored,omitempty"`
	Unchanged []string          `json:"unchanged,omitempty"`
	Invalid   []TemplateProblem `json:"invalid,omitempty"`
}

// templateProgress is kept in heartbeat details, so that a retried restore
// skips the templates an earlier attempt finished and still reports them.
type templateProgress struct {
	Progress  string            `json:"progress"` // "k/n templates", for the Web UI
	Done      int               `json:"done"`
	Restored  []string          `json:"restored,omitempty"`
	Unchanged []string          `json:"unchanged,omitempty"`
	Invalid   []TemplateProblem `json:"invalid,omitempty"`
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

// RestoreSessionTemplates puts saved BOS v2 session templates back. A
// template BOS already holds as saved is left alone, any other is PUT;
// then BOS is asked whether each is valid, and the ones it finds invalid
// (or refuses to store) are reported with BOS's message rather than failing
// the step, since they may have been invalid before the rebuild too.
func (c *CSM) RestoreSessionTemplates(ctx context.Context, req RestoreTemplatesRequest) (RestoreTemplatesResult, error) {
	cl, err := c.client()
	if err != nil {
		return RestoreTemplatesResult{}, err
	}
	saved := make([]savedTemplate, len(req.Templates))
	for i, raw := range req.Templates {
		if saved[i], err = parseSavedTemplate(raw); err != nil {
			return RestoreTemplatesResult{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("snapshot session template %d: %v; take the snapshot again", i+1, err), api.InvalidRequestError, nil)
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
			return RestoreTemplatesResult{}, csmError(err)
		}
		switch {
		case refused != "":
			p.Invalid = append(p.Invalid, TemplateProblem{Name: t.label(), Message: "BOS refused to store it: " + refused})
		default:
			if changed {
				p.Restored = append(p.Restored, t.label())
			} else {
				p.Unchanged = append(p.Unchanged, t.label())
			}
			valid, msg, err := cl.SessionTemplateValid(tctx, t.name)
			if err != nil {
				return RestoreTemplatesResult{}, csmError(err)
			}
			if !valid {
				p.Invalid = append(p.Invalid, TemplateProblem{Name: t.label(), Message: msg})
			}
		}
		p.Done = i + 1
		p.Progress = fmt.Sprintf("%d/%d templates", p.Done, len(saved))
		activity.RecordHeartbeat(ctx, p)
	}
	msg := fmt.Sprintf("%d BOS session templates: %d restored, %d already as saved", len(saved), len(p.Restored), len(p.Unchanged))
	if len(p.Invalid) > 0 {
		var names []string
		for _, in := range p.Invalid {
			names = append(names, in.Name)
		}
		msg += fmt.Sprintf("; %d not valid: %s", len(p.Invalid), strings.Join(names, ", "))
	}
	if resumed > 0 {
		msg += fmt.Sprintf(" (%d done before a retry)", resumed)
	}
	return RestoreTemplatesResult{Outcome: outcome(ctx, "%s", msg), Restored: p.Restored, Unchanged: p.Unchanged, Invalid: p.Invalid}, nil
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
