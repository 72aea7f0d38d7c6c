package catalog

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/csmops/etcd-repopulate/internal/settings"
)

// SettingsYAML renders every service's default settings as the services:
// block of a worker config, each key with its `doc` tag as a comment:
// docs/configuration.md shows it (generated, checked by a test).
func SettingsYAML() string {
	var b strings.Builder
	b.WriteString("services:\n")
	for _, e := range entries {
		v := reflect.ValueOf(e.Settings()).Elem()
		if v.NumField() == 0 {
			continue // no keys (bos)
		}
		line(&b, 1, string(e.Service)+":", e.Title+": "+e.Does)
		fields(&b, 2, v)
	}
	return b.String()
}

func fields(b *strings.Builder, depth int, v reflect.Value) {
	for i := range v.NumField() {
		f, val := v.Type().Field(i), v.Field(i)
		if f.Anonymous {
			fields(b, depth, val)
			continue
		}
		key, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		doc := f.Tag.Get("doc")
		if val.Kind() == reflect.Struct {
			line(b, depth, key+":", doc)
			fields(b, depth+1, val)
			continue
		}
		line(b, depth, key+": "+scalar(val), doc)
	}
}

func line(b *strings.Builder, depth int, text, doc string) {
	text = strings.Repeat("  ", depth) + text
	if doc != "" {
		text = fmt.Sprintf("%-26s # %s", text, doc)
	}
	b.WriteString(strings.TrimRight(text, " ") + "\n")
}

func scalar(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case settings.Duration:
		return shortDuration(time.Duration(x))
	case string:
		if x == "" {
			return `""`
		}
		return x
	case []string:
		if x == nil {
			return "null"
		}
		if len(x) == 0 {
			return "[]"
		}
		return "[" + strings.Join(x, ", ") + "]"
	}
	return fmt.Sprint(v.Interface())
}

// shortDuration writes 30m rather than 30m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
