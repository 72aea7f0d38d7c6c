// Package devserver runs the Temporal CLI's dev server (frontend, SQLite
// persistence, Web UI) as a child process on loopback ports, for tests and
// the demo. Restarting it with the same DBFile keeps every workflow.
package devserver

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/csmops/etcd-repopulate/internal/loopback"
)

// Server is a running dev server.
type Server struct {
	Binary  string
	DBFile  string
	LogFile string
	// Address is the frontend host:port; UIURL the Web UI.
	Address string
	UIURL   string
	Port    int
	UIPort  int
	cmd     *exec.Cmd
	done    chan struct{}
}

// Start runs binary ("temporal") with a SQLite file dbFile on free ports and
// waits until the frontend accepts connections. uiPort 0 picks a free one.
func Start(ctx context.Context, binary, dbFile string, port, uiPort int) (*Server, error) {
	if _, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("temporal CLI not found at %s: run make tools (hack/install-tools.sh) first", binary)
	}
	ports, err := loopback.FreePorts(2)
	if err != nil {
		return nil, err
	}
	if port == 0 {
		port = ports[0]
	}
	if uiPort == 0 {
		uiPort = ports[1]
	}
	s := &Server{Binary: binary, DBFile: dbFile, LogFile: dbFile + ".log", Port: port, UIPort: uiPort,
		Address: fmt.Sprintf("127.0.0.1:%d", port), UIURL: fmt.Sprintf("http://127.0.0.1:%d", uiPort)}
	return s, s.start(ctx)
}

// Restart stops the server and starts it again on the same ports and file.
func (s *Server) Restart(ctx context.Context) error {
	s.Stop()
	return s.start(ctx)
}

func (s *Server) start(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Dir(s.DBFile), 0o755); err != nil {
		return err
	}
	logFile, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.Binary, "server", "start-dev",
		"--ip", "127.0.0.1", "--port", strconv.Itoa(s.Port),
		"--ui-ip", "127.0.0.1", "--ui-port", strconv.Itoa(s.UIPort),
		"--db-filename", s.DBFile, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start temporal dev server: %w", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(s.done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("temporal dev server exited at start: see %s", s.LogFile)
		case <-ctx.Done():
			s.Stop()
			return ctx.Err()
		default:
		}
		if c, err := net.DialTimeout("tcp", s.Address, time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.Stop()
	return fmt.Errorf("temporal dev server not listening on %s after 30s: see %s", s.Address, s.LogFile)
}

// Stop ends the server (SIGTERM, then SIGKILL after 10 s).
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// PID is the server process's id, 0 when it is not running.
func (s *Server) PID() int {
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}
