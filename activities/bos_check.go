package activities

import (
	"context"
	"fmt"
	"strings"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/csmops/etcd-repopulate/internal/csm"
)

// ErrNoTemplates: BOS has no session template after gate bos-templates.
const ErrNoTemplates = "NoSessionTemplates"

// TemplatesCheck is what BOS holds after a person rebuilt the templates.
type TemplatesCheck struct {
	Outcome
	Names   []string          `json:"names,omitempty"`
	Invalid []TemplateProblem `json:"invalid,omitempty"`
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
}

// CheckSessionTemplates lists the BOS v2 session templates and asks BOS to
// validate each, after the bos-templates gate: the person who approved it
// said the product-stream procedures were followed; this shows what they
// produced. No template at all is an error: approving did not restore
// anything. It heartbeats after each template and resumes from the index
// an earlier attempt reached.
func (c *CSM) CheckSessionTemplates(ctx context.Context) (TemplatesCheck, error) {
	cl, err := c.client()
	if err != nil {
		return TemplatesCheck{}, err
	}
	tmpls, err := cl.SessionTemplates(ctx)
	if err != nil {
		return TemplatesCheck{}, csmError(err)
	}
	var p templatesChecked
	if activity.HasHeartbeatDetails(ctx) {
		// A list that changed since (a template added or removed before the
		// index) is checked again from the start.
		if err := activity.GetHeartbeatDetails(ctx, &p); err != nil || p.Done > len(tmpls) || p.Done > 0 && tmpls[p.Done-1].Name != p.Last {
			p = templatesChecked{}
		}
	}
	for i := p.Done; i < len(tmpls); i++ {
		t := tmpls[i]
		valid, msg, err := cl.SessionTemplateValid(ctx, t.Name)
		if err != nil {
			if csm.Retryable(err) {
				return TemplatesCheck{}, err
			}
			return TemplatesCheck{}, csmError(err)
		}
		p.Names = append(p.Names, t.Name)
		if !valid {
			p.Invalid = append(p.Invalid, TemplateProblem{Name: t.Name, Message: msg})
		}
		p.Done, p.Last = i+1, t.Name
		p.Progress = fmt.Sprintf("%d/%d templates", p.Done, len(tmpls))
		recordHeartbeat(ctx, p)
	}
	if len(tmpls) == 0 {
		return TemplatesCheck{}, temporal.NewNonRetryableApplicationError(
			"BOS has no session templates although gate bos-templates was approved: rebuild them as the product-stream procedures say (or start the run with --snapshot), then run the bos service again", ErrNoTemplates, nil)
	}
	res := TemplatesCheck{Names: p.Names, Invalid: p.Invalid}
	res.Outcome = outcome(ctx, "BOS has %d session templates; %d invalid%s", len(tmpls), len(res.Invalid), invalidNames(res.Invalid))
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
