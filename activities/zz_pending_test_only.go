package activities

// TEMPORARY (not committed): declarations the helpers' branches provide.

import (
	"context"
	"encoding/json"
)

type RestoreTemplatesRequest struct {
	Templates []json.RawMessage `json:"templates"`
}
type TemplateProblem struct {
	Name    string `json:"name"`
	Message string `json:"message"`
}
type RestoreTemplatesResult struct {
	Outcome
	Restored  []string          `json:"restored,omitempty"`
	Unchanged []string          `json:"unchanged,omitempty"`
	Invalid   []TemplateProblem `json:"invalid,omitempty"`
}

func (c *CSM) RestoreSessionTemplates(ctx context.Context, req RestoreTemplatesRequest) (RestoreTemplatesResult, error) {
	panic(1)
}
