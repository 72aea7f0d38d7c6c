// Command repopulate starts, follows, cancels and reports etcd-repopulate
// runs; see repopulate --help.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/csmops/etcd-repopulate/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, os.Args[1:], cli.Streams{Out: os.Stdout, Err: os.Stderr})
	stop()
	os.Exit(code)
}
