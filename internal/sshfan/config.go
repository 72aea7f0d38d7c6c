package sshfan

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
)

// Target is where and as whom Run connects for one host name, after the
// OpenSSH client config is applied.
type Target struct {
	Host          string   // the name as given to Run
	Addr          string   // host:port dialled
	User          string   // remote user
	IdentityFiles []string // the config's IdentityFile values for this host, expanded; empty if it names none
}

// sshConfig answers OpenSSH client config lookups fast for configs with
// thousands of Host blocks: blocks whose patterns are all literal names are
// indexed by name, so a lookup costs the wildcard blocks plus the few blocks
// naming the host, not a regexp per block.
type sshConfig struct {
	path     string
	cfg      *ssh_config.Config
	literal  map[string][]int // lower-case name -> indexes of literal blocks naming it
	wildcard []int            // indexes of the other blocks (patterns with * ? or !)
}

func loadConfig(path string) (*sshConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sshfan: OpenSSH config file %s is unreadable: %w; fix the path in Options.ConfigFile or leave it empty to use none", path, err)
	}
	cfg, err := ssh_config.DecodeBytes(data)
	if err != nil {
		return nil, fmt.Errorf("sshfan: OpenSSH config file %s does not parse: %w; check it with `ssh -G -F %s somehost`", path, err, path)
	}
	c := &sshConfig{path: path, cfg: cfg, literal: map[string][]int{}}
	for i, h := range cfg.Hosts {
		lit := len(h.Patterns) > 0
		for _, p := range h.Patterns {
			if strings.ContainsAny(p.String(), "*?!") {
				lit = false
			}
		}
		if !lit {
			c.wildcard = append(c.wildcard, i)
			continue
		}
		for _, p := range h.Patterns {
			k := strings.ToLower(p.String())
			if l := c.literal[k]; len(l) == 0 || l[len(l)-1] != i {
				c.literal[k] = append(c.literal[k], i)
			}
		}
	}
	return c, nil
}

// blocks returns the indexes of the blocks that apply to alias, in file
// order.
func (c *sshConfig) blocks(alias string) []int {
	lit := c.literal[strings.ToLower(alias)]
	out := make([]int, 0, len(lit)+len(c.wildcard))
	out = append(out, lit...)
	for _, i := range c.wildcard {
		if c.cfg.Hosts[i].Matches(alias) {
			out = append(out, i)
		}
	}
	if len(lit) > 0 && len(out) > len(lit) {
		sort.Ints(out)
	}
	return out
}

// values returns the values of key (lower case) for alias in OpenSSH's
// order: the first is the one that applies for single-valued keys.
func (c *sshConfig) values(blocks []int, alias, key string, all bool) []string {
	var out []string
	for _, bi := range blocks {
		for _, n := range c.cfg.Hosts[bi].Nodes {
			switch t := n.(type) {
			case *ssh_config.KV:
				if strings.EqualFold(t.Key, key) {
					out = append(out, t.Value)
				}
			case *ssh_config.Include:
				if all {
					v, _ := t.GetAll(alias, key)
					out = append(out, v...)
				} else if v := t.Get(alias, key); v != "" {
					out = append(out, v)
				}
			}
			if !all && len(out) > 0 {
				return out
			}
		}
	}
	return out
}

// allIdentityFiles lists every IdentityFile value in the config with where
// it is, to load them all once up front.
func (c *sshConfig) allIdentityFiles() []configValue {
	var out []configValue
	for _, h := range c.cfg.Hosts {
		for _, n := range h.Nodes {
			if kv, ok := n.(*ssh_config.KV); ok && strings.EqualFold(kv.Key, "IdentityFile") {
				out = append(out, configValue{value: kv.Value, line: kv.Pos().Line})
			}
		}
	}
	return out
}

type configValue struct {
	value string
	line  int
}

var (
	homeDir   = func() string { h, _ := os.UserHomeDir(); return h }()
	localUser = func() string {
		if u, err := user.Current(); err == nil {
			return u.Username
		}
		return os.Getenv("USER")
	}()
)

// expandPath applies OpenSSH's ~ and %-tokens to a path: %d home, %u local
// user, %r remote user, %h remote host name, %n the name as given, %%.
func expandPath(p, remoteUser, hostName, alias string) (string, error) {
	p = unquote(p)
	if p == "~" {
		p = homeDir
	} else if strings.HasPrefix(p, "~/") {
		p = filepath.Join(homeDir, p[2:])
	}
	return expandTokens(p, map[byte]string{'d': homeDir, 'u': localUser, 'r': remoteUser, 'h': hostName, 'n': alias})
}

func expandTokens(s string, tokens map[byte]string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return "", fmt.Errorf("%q ends with a lone %%", s)
		}
		i++
		if s[i] == '%' {
			b.WriteByte('%')
			continue
		}
		v, ok := tokens[s[i]]
		if !ok {
			return "", fmt.Errorf("%q uses token %%%c, which sshfan does not support (use %%d %%u %%r %%h %%n %%%%)", s, s[i])
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

// resolve applies the config (if any) and the defaults to one host name.
func (r *Runner) resolve(alias string) (Target, error) {
	t := Target{Host: alias, User: r.opts.User}
	hostName, port := alias, "22"
	if r.cfg != nil {
		blocks := r.cfg.blocks(alias)
		if v := r.cfg.values(blocks, alias, "hostname", false); len(v) > 0 {
			h, err := expandTokens(unquote(v[0]), map[byte]string{'h': alias})
			if err != nil {
				return t, fmt.Errorf("HostName in %s: %w", r.cfg.path, err)
			}
			hostName = h
		}
		if v := r.cfg.values(blocks, alias, "port", false); len(v) > 0 {
			p, err := strconv.Atoi(unquote(v[0]))
			if err != nil || p < 1 || p > 65535 {
				//lint:ignore ST1005 Port is the ssh_config(5) keyword, capitalised as that manual writes it
				return t, fmt.Errorf("Port %q in %s for %s is not a port number", v[0], r.cfg.path, alias)
			}
			port = strconv.Itoa(p)
		}
		if v := r.cfg.values(blocks, alias, "user", false); len(v) > 0 {
			t.User = unquote(v[0])
		}
		for _, f := range r.cfg.values(blocks, alias, "identityfile", true) {
			if strings.EqualFold(unquote(f), "none") {
				continue
			}
			p, err := expandPath(f, t.User, hostName, alias)
			if err != nil {
				return t, fmt.Errorf("IdentityFile in %s: %w", r.cfg.path, err)
			}
			t.IdentityFiles = append(t.IdentityFiles, p)
		}
	}
	if t.User == "" {
		t.User = localUser
	}
	t.Addr = net.JoinHostPort(strings.Trim(hostName, "[]"), port)
	return t, nil
}
