package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseJobDelays(t *testing.T) {
	got, err := parseJobDelays("cray-fas-loader=8s, cray-reds-init=1500ms,")
	if err != nil || len(got) != 2 || got["cray-fas-loader"] != 8*time.Second || got["cray-reds-init"] != 1500*time.Millisecond {
		t.Errorf("parseJobDelays: %v, %v", got, err)
	}
	for _, bad := range []string{"cray-fas-loader", "=8s", "cray-fas-loader=soon", "cray-fas-loader=-1s"} {
		if _, err := parseJobDelays(bad); err == nil || !strings.Contains(err.Error(), "is not JOB=DURATION") {
			t.Errorf("%q: %v, want it refused as not JOB=DURATION", bad, err)
		}
	}
}
