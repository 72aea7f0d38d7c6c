// Command badinputdoc turns the JSON lines badinput.Record wrote during
// `make bad-input-doc` into docs/bad-input.md.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/csmops/etcd-repopulate/internal/badinput"
)

func main() {
	in := flag.String("in", "", "JSON lines written by the tests ($"+badinput.EnvLog+")")
	out := flag.String("out", "docs/bad-input.md", "markdown file to write")
	min := flag.Int("min-rows", 25, "refuse to write fewer rows (a test run that recorded little)")
	flag.Parse()
	if err := run(*in, *out, *min); err != nil {
		fmt.Fprintf(os.Stderr, "badinputdoc: %v\n", err)
		os.Exit(1)
	}
}

func run(in, out string, min int) error {
	if in == "" {
		return fmt.Errorf("-in is required")
	}
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	cases, err := badinput.Read(f)
	if err != nil {
		return fmt.Errorf("%s: %v", in, err)
	}
	if len(cases) < min {
		return fmt.Errorf("%s has %d cases, want at least %d: did the tests run with %s set?", in, len(cases), min, badinput.EnvLog)
	}
	if err := os.WriteFile(out, badinput.Render(cases), 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s: %d rows\n", out, len(cases))
	return nil
}
