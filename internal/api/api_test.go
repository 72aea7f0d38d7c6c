package api

import "testing"

func TestServiceWorkflowID(t *testing.T) {
	if id := ServiceWorkflowID("run-1", FAS); id != "run-1/fas" {
		t.Error(id)
	}
}
