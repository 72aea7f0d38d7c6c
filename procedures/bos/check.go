package bos

import (
	"context"
	"fmt"
	"strings"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
)

// namedCheck maps check-bos-templates's contract name (internal/api) to
// its implementation.
func namedCheck(_ *activities.Kube, c *activities.CSM) map[string]any {
	return map[string]any{api.ActivityCheckSessionTemplates: (&Activities{CSM: c}).CheckSessionTemplates}
}

// ErrNoTemplates: BOS has no session template after gate bos-templates.
const ErrNoTemplates = "NoSessionTemplates"

// CheckTemplatesRequest says which BOS API to read the templates through.
// Runs recorded before it existed scheduled CheckSessionTemplates with no
// argument; they decode as the zero request, which speaks BOS v2, what
// those runs spoke.
type CheckTemplatesRequest struct {
	APIs api.APIVersions `json:"apis,omitzero"`
}

// TemplatesCheck is what BOS holds after a person rebuilt the templates.
type TemplatesCheck struct {
	activities.Outcome
	Names    []string          `json:"names,omitempty"`
	Invalid  []TemplateProblem `json:"invalid,omitempty"`
	Warnings []TemplateProblem `json:"warnings,omitempty"`
	// Unvalidated says, on BOS v1, that BOS could not be asked.
	Unvalidated string `json:"unvalidated,omitempty"`
}

// templatesChecked is kept in heartbeat details: a retried check resumes
// after the templates an earlier attempt validated, so thousands of
// templates finish even across worker restarts.
type templatesChecked struct {
	Progress string            `json:"progress"` // "k/n templates", for the Web UI
	Done     int               `json:"done"`
	Last     string            `json:"last,omitempty"` // name of template Done-1, to notice a changed list
	Names    []string          `json:"names,omitempty"`
	Invalid  []TemplateProblem `json:"invalid,omitempty"`
	Warnings []TemplateProblem `json:"warnings,omitempty"`
}

// CheckSessionTemplates lists the BOS session templates and has each
// validated (v2: by BOS; v1, which cannot validate: csm.CheckTemplate),
// after the bos-templates gate (or, on CSM 1.3+, where the templates live
// outside etcd, instead of restoring them): the person who approved it
// said the product-stream procedures were followed; this shows what they
// produced. No template at all is an error: approving did not restore
// anything. It heartbeats after each template and resumes from the index
// an earlier attempt reached.
func (a *Activities) CheckSessionTemplates(ctx context.Context, req CheckTemplatesRequest) (TemplatesCheck, error) {
	cl, err := a.CSM.APIClient()
	if err != nil {
		return TemplatesCheck{}, err
	}
	cl = cl.WithAPIs(req.APIs)
	tmpls, err := cl.SessionTemplates(ctx)
	if err != nil {
		return TemplatesCheck{}, activities.CSMError(err)
	}
	var p templatesChecked
	if activity.HasHeartbeatDetails(ctx) {
		// A list that changed since (a template added or removed before the
		// index) is checked again from the start.
		if err := activity.GetHeartbeatDetails(ctx, &p); err != nil || p.Done > len(tmpls) || p.Done > 0 && tmpls[p.Done-1].Name != p.Last {
			p = templatesChecked{}
		}
	}
	v1 := req.APIs.BOSVersion() == api.APIv1
	for i := p.Done; i < len(tmpls); i++ {
		t := tmpls[i]
		p.Names = append(p.Names, t.Name)
		if v1 {
			if msg := csm.CheckTemplate(t); msg != "" {
				p.Invalid = append(p.Invalid, TemplateProblem{Name: t.Name, Message: msg})
			}
		} else {
			v, err := cl.ValidateSessionTemplate(ctx, t.Name)
			if err != nil {
				if csm.Retryable(err) {
					return TemplatesCheck{}, err
				}
				return TemplatesCheck{}, activities.CSMError(err)
			}
			switch v.Verdict {
			case csm.TemplateWarning:
				p.Warnings = append(p.Warnings, TemplateProblem{Name: t.Name, Message: v.Message})
			case csm.TemplateInvalid:
				p.Invalid = append(p.Invalid, TemplateProblem{Name: t.Name, Message: v.Message})
			}
		}
		p.Done, p.Last = i+1, t.Name
		p.Progress = fmt.Sprintf("%d/%d templates", p.Done, len(tmpls))
		activities.RecordHeartbeat(ctx, p)
	}
	if len(tmpls) == 0 {
		return TemplatesCheck{}, temporal.NewNonRetryableApplicationError(
			"BOS has no session templates although gate bos-templates was approved: rebuild them as the product-stream procedures say (or start the run with --snapshot), then run the bos service again", ErrNoTemplates, nil)
	}
	res := TemplatesCheck{Names: p.Names, Invalid: p.Invalid, Warnings: p.Warnings}
	msg := fmt.Sprintf("BOS has %d session templates; %d invalid%s", len(tmpls), len(res.Invalid), invalidNames(res.Invalid))
	if len(res.Warnings) > 0 {
		msg += fmt.Sprintf("; %d valid with warnings%s", len(res.Warnings), invalidNames(res.Warnings))
	}
	if v1 {
		res.Unvalidated = bosV1Unvalidated
		msg += "; " + bosV1Unvalidated
	}
	res.Outcome = activities.NewOutcome(ctx, "%s", msg)
	return res, nil
}

func invalidNames(ps []TemplateProblem) string {
	if len(ps) == 0 {
		return ""
	}
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	return fmt.Sprintf(" (%s)", strings.Join(names, ", "))
}
