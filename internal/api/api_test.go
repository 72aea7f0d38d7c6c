package api

import (
	"slices"
	"strings"
	"testing"
)

func TestParseServices(t *testing.T) {
	all, err := ParseServices(nil)
	if err != nil || len(all) != 9 {
		t.Fatalf("default: %v %v", all, err)
	}
	got, err := ParseServices([]string{" REDS", "bss", "reds", ""})
	if err != nil || !slices.Equal(got, []Service{BSS, REDS}) {
		t.Errorf("got %v %v, want [bss reds] in runbook order without duplicates", got, err)
	}
	_, err = ParseServices([]string{"bss", "dns", "hms"})
	if err == nil || !strings.Contains(err.Error(), `"dns", "hms"`) || !strings.Contains(err.Error(), ServiceNames()) {
		t.Errorf("unknown: %v", err)
	}
	if _, err := ParseServices([]string{" ", ""}); err == nil {
		t.Error("a list of blanks must be refused, not read as all")
	}
}

func TestServiceWorkflowID(t *testing.T) {
	if id := ServiceWorkflowID("run-1", FAS); id != "run-1/fas" {
		t.Error(id)
	}
}
