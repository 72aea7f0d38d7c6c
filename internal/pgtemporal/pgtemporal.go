// Package pgtemporal runs the production shape of Temporal on loopback for
// tests: Debian's PostgreSQL (its own cluster in a scratch directory, run as
// the 'postgres' system user when the tests run as root: postgres refuses
// root) and the Temporal server binary on it, all four services in one
// process. Schema and namespace set-up run hack/temporal-setup.sh, the
// script docker-compose.yml runs, so the two cannot drift.
package pgtemporal

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"text/template"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"

	"github.com/csmops/etcd-repopulate/internal/loopback"
)

// Options say where the binaries are and what to run.
type Options struct {
	// BinDir holds postgres, initdb, temporal-server, temporal-sql-tool and
	// temporal (the CLI), as hack/install-tools.sh links them.
	BinDir string
	// SetupScript is hack/temporal-setup.sh.
	SetupScript string
	// Namespace to register; "default" when empty.
	Namespace string
}

// The database user and password, as in docker-compose.yml.
const (
	sqlUser     = "temporal"
	sqlPassword = "temporal"
)

// Server is PostgreSQL and a Temporal server on it.
type Server struct {
	// Address is the frontend's host:port.
	Address   string
	Namespace string
	// Dir holds the database, the server's config and both logs.
	Dir                    string
	PostgresLog, ServerLog string
	PostgresPort           int

	o        Options
	ports    []int
	postgres *proc
	temporal *proc
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// Start initialises a PostgreSQL cluster in a new scratch directory, starts
// it on 127.0.0.1, creates Temporal's schemas, starts the server on free
// loopback ports and registers the namespace.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	for _, b := range []string{"postgres", "initdb", "temporal-server", "temporal-sql-tool", "temporal"} {
		if _, err := os.Stat(filepath.Join(o.BinDir, b)); err != nil {
			return nil, fmt.Errorf("%s not found in %s: run hack/install-tools.sh temporal temporal-server postgresql", b, o.BinDir)
		}
	}
	dir, err := os.MkdirTemp("", "pgtemporal-")
	if err != nil {
		return nil, err
	}
	// frontend gRPC, HTTP and membership; history, matching and worker
	// gRPC and membership; PostgreSQL.
	ports, err := loopback.FreePorts(6)
	if err != nil {
		return nil, err
	}
	// Temporal stores membership ports as a smallint: below 32768, where
	// the kernel's ephemeral ports (FreePorts) never are.
	members, err := lowPorts(4)
	if err != nil {
		return nil, err
	}
	ports = []int{ports[0], ports[1], members[0], ports[2], members[1], ports[3], members[2], ports[4], members[3], ports[5]}
	s := &Server{Dir: dir, Namespace: o.Namespace, o: o, ports: ports[:9], PostgresPort: ports[9],
		Address:     fmt.Sprintf("127.0.0.1:%d", ports[0]),
		PostgresLog: filepath.Join(dir, "postgres.log"), ServerLog: filepath.Join(dir, "temporal-server.log")}
	if err := s.startPostgres(ctx); err != nil {
		s.Remove()
		return nil, err
	}
	if err := s.setup(ctx, "schema"); err != nil {
		s.Remove()
		return nil, err
	}
	if err := s.StartServer(ctx); err != nil {
		s.Remove()
		return nil, err
	}
	// Retried as the compose stack's restart policy does: the namespace
	// cache of a fresh server may lag.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		err := s.setup(ctx, "namespace")
		if err == nil {
			break
		}
		exited := false
		select {
		case <-s.temporal.done:
			exited = true
		default:
		}
		if exited || time.Now().After(deadline) {
			err = fmt.Errorf("%w\nthe server's log ends:\n%s", err, tail(s.ServerLog))
			s.Remove()
			return nil, err
		}
	}
	return s, nil
}

// postgresCredential is the 'postgres' system user when running as root
// (postgres refuses root), nil otherwise (run as the current user).
func postgresCredential() (*syscall.Credential, error) {
	if os.Getuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL needs the 'postgres' system user: %w (hack/install-tools.sh postgresql installs the package that creates it)", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (s *Server) startPostgres(ctx context.Context) error {
	cred, err := postgresCredential()
	if err != nil {
		return err
	}
	pwfile := filepath.Join(s.Dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(sqlPassword+"\n"), 0o600); err != nil {
		return err
	}
	if cred != nil {
		for _, p := range []string{s.Dir, pwfile} {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				return err
			}
		}
	}
	// bin/ links them; 'postgres' may not traverse to the link itself.
	initdbBin, err := filepath.EvalSymlinks(filepath.Join(s.o.BinDir, "initdb"))
	if err != nil {
		return err
	}
	postgresBin, err := filepath.EvalSymlinks(filepath.Join(s.o.BinDir, "postgres"))
	if err != nil {
		return err
	}
	data := filepath.Join(s.Dir, "data")
	initdb := exec.CommandContext(ctx, initdbBin, "-D", data, "-U", sqlUser,
		"--pwfile", pwfile, "--auth", "scram-sha-256", "--encoding", "UTF8", "--locale", "C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb %s: %v\n%s", data, err, out)
	}
	// Only loopback TCP and a socket in the scratch directory. fsync off:
	// the tests kill workers, never the database host.
	s.postgres, err = s.launch(s.PostgresLog, cred, postgresBin, "-D", data,
		"-h", "127.0.0.1", "-p", strconv.Itoa(s.PostgresPort), "-k", s.Dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200")
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	return waitListening(ctx, s.postgres, fmt.Sprintf("127.0.0.1:%d", s.PostgresPort), "postgres", s.PostgresLog)
}

// setup runs hack/temporal-setup.sh what against this server.
func (s *Server) setup(ctx context.Context, what string) error {
	cmd := exec.CommandContext(ctx, "/bin/sh", s.o.SetupScript, what)
	cmd.Env = append(os.Environ(),
		"TEMPORAL_SQL_TOOL="+filepath.Join(s.o.BinDir, "temporal-sql-tool"),
		"TEMPORAL_CLI="+filepath.Join(s.o.BinDir, "temporal"),
		"SQL_HOST=127.0.0.1", "SQL_PORT="+strconv.Itoa(s.PostgresPort), "SQL_USER="+sqlUser, "SQL_PASSWORD="+sqlPassword,
		"TEMPORAL_ADDRESS="+s.Address, "TEMPORAL_NAMESPACE="+s.Namespace)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", s.o.SetupScript, what, err, out.String())
	}
	return nil
}

var configTemplate = template.Must(template.New("").Parse(`log:
  stdout: true
  level: warn
persistence:
  defaultStore: default
  visibilityStore: visibility
  numHistoryShards: 4
  datastores:
    default:
      sql: &sql
        pluginName: postgres12
        databaseName: temporal
        connectAddr: "127.0.0.1:{{.PG}}"
        connectProtocol: tcp
        user: temporal
        password: temporal
        maxConns: 20
        maxIdleConns: 20
        maxConnLifetime: 1h
    visibility:
      sql:
        <<: *sql
        databaseName: temporal_visibility
        maxConns: 4
        maxIdleConns: 4
global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: 127.0.0.1
services:
  frontend:
    rpc: {grpcPort: {{index .P 0}}, httpPort: {{index .P 1}}, membershipPort: {{index .P 2}}, bindOnIP: 127.0.0.1}
  history:
    rpc: {grpcPort: {{index .P 3}}, membershipPort: {{index .P 4}}, bindOnIP: 127.0.0.1}
  matching:
    rpc: {grpcPort: {{index .P 5}}, membershipPort: {{index .P 6}}, bindOnIP: 127.0.0.1}
  worker:
    rpc: {grpcPort: {{index .P 7}}, membershipPort: {{index .P 8}}, bindOnIP: 127.0.0.1}
clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: active
  currentClusterName: active
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: frontend
      rpcAddress: "127.0.0.1:{{index .P 0}}"
dcRedirectionPolicy:
  policy: noop
`))

// StartServer starts the Temporal server (again, after StopServer) on the
// same ports and database.
func (s *Server) StartServer(ctx context.Context) error {
	cfgDir := filepath.Join(s.Dir, "config")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		return err
	}
	var cfg bytes.Buffer
	if err := configTemplate.Execute(&cfg, map[string]any{"PG": s.PostgresPort, "P": s.ports}); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "development.yaml"), cfg.Bytes(), 0o644); err != nil {
		return err
	}
	var err error
	s.temporal, err = s.launch(s.ServerLog, nil, filepath.Join(s.o.BinDir, "temporal-server"),
		"--root", s.Dir, "--config", "config", "--env", "development", "--allow-no-auth", "start")
	if err != nil {
		return fmt.Errorf("start temporal-server: %w", err)
	}
	if err := waitListening(ctx, s.temporal, s.Address, "temporal-server", s.ServerLog); err != nil {
		return err
	}
	// The frontend listens before it is healthy; Dial checks its health.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		c, err := client.Dial(client.Options{HostPort: s.Address, Logger: log.NewStructuredLogger(slog.New(slog.DiscardHandler))})
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-s.temporal.done:
			return fmt.Errorf("temporal-server exited at start; its log ends:\n%s", tail(s.ServerLog))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("temporal-server not healthy on %s after a minute: %w; its log ends:\n%s", s.Address, err, tail(s.ServerLog))
		}
	}
}

// StopServer ends the Temporal server (SIGTERM, SIGKILL after 20 s).
func (s *Server) StopServer() { stop(s.temporal, 20*time.Second); s.temporal = nil }

// Stop ends the server and PostgreSQL and keeps Dir, its logs included.
func (s *Server) Stop() {
	s.StopServer()
	stop(s.postgres, 20*time.Second) // SIGTERM: postgres's smart shutdown; the server is gone
	s.postgres = nil
}

// Remove is Stop, then removes Dir.
func (s *Server) Remove() {
	s.Stop()
	os.RemoveAll(s.Dir)
}

func (s *Server) launch(logPath string, cred *syscall.Credential, bin string, args ...string) (*proc, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logFile.Close(); close(p.done) }()
	return p, nil
}

func stop(p *proc, grace time.Duration) {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func waitListening(ctx context.Context, p *proc, addr, name, logPath string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited at start; its log ends:\n%s", name, tail(logPath))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not listening on %s after 60s: see %s", name, addr, logPath)
}

// tail is the end of a log, for an error message: Stop removes the log.
func tail(path string) string {
	data, _ := os.ReadFile(path)
	if len(data) > 3000 {
		data = data[len(data)-3000:]
	}
	return string(data)
}

// lowPorts finds n free loopback ports in [20000, 32768), outside the
// kernel's ephemeral range.
func lowPorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for try := 0; len(ports) < n && try < 1000; try++ {
		p := 20000 + rand.IntN(12768)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ls = append(ls, l)
		ports = append(ports, p)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("no %d free loopback ports in [20000, 32768)", n)
	}
	return ports, nil
}
