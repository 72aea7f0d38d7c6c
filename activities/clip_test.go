package activities

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// A node's failure reason is clipped so that a batch of 1,000 failed nodes
// stays a small payload; the cut keeps UTF-8 valid and shows it was cut.
func TestClipKeepsReasonsShortAndValid(t *testing.T) {
	short := "connection refused"
	if Clip(short, MaxReasonBytes) != short {
		t.Errorf("a short reason was changed")
	}
	long := strings.Repeat("é", MaxReasonBytes) // 2 bytes each
	got := Clip(long, MaxReasonBytes)
	if len(got) > MaxReasonBytes || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
		t.Errorf("clip: %d bytes, valid %v: %q", len(got), utf8.ValidString(got), got)
	}
}
