package activities

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"go.temporal.io/sdk/temporal"

	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/sshfan"
)

// CSM performs the steps that talk to CSM services through the API gateway
// and to nodes over SSH. Credentials stay in the worker: the token, the
// client secret and SSH keys are never activity arguments or results.
type CSM struct {
	// Client is nil when the worker has no csm.baseURL; ClientErr says why
	// it could not be built otherwise.
	Client    *csm.Client
	ClientErr error
	// SSH is nil when the SSH settings are unusable; SSHErr says why.
	SSH    *sshfan.Runner
	SSHErr error
}

// Non-retryable error types of the CSM steps.
const (
	ErrCSMNotConfigured = "CSMNotConfigured"
	ErrSSHNotConfigured = "SSHNotConfigured"
	ErrBadHostRange     = "BadHostRange"
)

func (c *CSM) APIClient() (*csm.Client, error) {
	if c.Client != nil {
		return c.Client, nil
	}
	msg := "the CSM API gateway is not configured: set csm.baseURL (and csm.clientSecret) in the worker config"
	if c.ClientErr != nil {
		msg = fmt.Sprintf("the CSM API client could not be set up: %v", c.ClientErr)
	}
	return nil, temporal.NewNonRetryableApplicationError(msg, ErrCSMNotConfigured, nil)
}

func (c *CSM) SSHRunner() (*sshfan.Runner, error) {
	if c.SSH != nil {
		return c.SSH, nil
	}
	msg := "SSH to nodes is not configured: set ssh.knownHosts and keys in the worker config"
	if c.SSHErr != nil {
		msg = fmt.Sprintf("SSH to nodes cannot be used: %v", c.SSHErr)
	}
	return nil, temporal.NewNonRetryableApplicationError(msg, ErrSSHNotConfigured, nil)
}

// CSMError makes errors a retry cannot fix non-retryable, typed by kind.
func CSMError(err error) error {
	if err == nil || csm.Retryable(err) {
		return err
	}
	return temporal.NewNonRetryableApplicationError(err.Error(), "CSM"+string(csm.KindOf(err)), nil)
}

func ErrorText(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	return err.Error()
}

// MaxReasonBytes bounds one node's failure reason, so that a batch of
// 1,000 failed nodes (services.hmnfd.batchSize's maximum) stays well under
// 256 KiB as activity result and heartbeat details.
const MaxReasonBytes = 160

// clip shortens s to at most n bytes, on a rune boundary, marking the cut.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
