package productcatalog

import (
	"strings"
	"testing"
)

func TestHighestVersionWinsAndPreReleasesSortBelow(t *testing.T) {
	cases := map[string]struct {
		versions []string
		want     string
	}{
		"patch":       {[]string{"1.0.1", "1.0.11", "1.0.10"}, "1.0.11"},
		"upgrades":    {[]string{"1.3.0", "1.4.0", "1.2.5"}, "1.4.0"},
		"pre-release": {[]string{"1.4.4", "1.5.0-rc.2", "1.5.0-alpha.10"}, "1.5.0-rc.2"},
		"release":     {[]string{"1.5.0-rc.2", "1.5.0", "1.5.0-rc.10"}, "1.5.0"},
		"rc numbers":  {[]string{"1.6.0-rc.3", "1.6.0-rc.10"}, "1.6.0-rc.10"},
	}
	for name, tc := range cases {
		var data strings.Builder
		for _, v := range tc.versions {
			data.WriteString(Entry(v))
		}
		if c := Parse(data.String()); c.Highest != tc.want || c.Versions != len(tc.versions) {
			t.Errorf("%s: %+v, want %s", name, c, tc.want)
		}
	}
	for _, bad := range []string{"", "csm: [", "a: 1\n"} {
		if c := Parse(bad); c.Highest != "" || c.Note == "" {
			t.Errorf("%q: %+v", bad, c)
		}
	}
}
