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

// CheckSessionTemplates lists the BOS v2 session templates and asks BOS to
// validate each, after the bos-templates gate: the person who approved it
// said the product-stream procedures were followed; this shows what they
// produced. No template at all is an error: approving did not restore anything.
func (c *CSM) CheckSessionTemplates(ctx context.Context) (TemplatesCheck, error) {
	cl, err := c.client()
	if err != nil {
		return TemplatesCheck{}, err
	}
	tmpls, err := cl.SessionTemplates(ctx)
	if err != nil {
		return TemplatesCheck{}, csmError(err)
	}
	var res TemplatesCheck
	for i, t := range tmpls {
		res.Names = append(res.Names, t.Name)
		valid, msg, err := cl.SessionTemplateValid(ctx, t.Name)
		if err != nil {
			if csm.Retryable(err) {
				return TemplatesCheck{}, err
			}
			return TemplatesCheck{}, csmError(err)
		}
		if !valid {
			res.Invalid = append(res.Invalid, TemplateProblem{Name: t.Name, Message: msg})
		}
		activity.RecordHeartbeat(ctx, i+1)
	}
	if len(tmpls) == 0 {
		return TemplatesCheck{}, temporal.NewNonRetryableApplicationError(
			"BOS has no session templates although gate bos-templates was approved: rebuild them as the product-stream procedures say (or start the run with --snapshot), then run the bos service again", ErrNoTemplates, nil)
	}
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
