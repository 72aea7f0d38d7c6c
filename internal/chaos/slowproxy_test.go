package chaos

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// apiDelay is added to every request the worker sends to the API server and
// the CSM emulator. Without it a save or a create takes a few milliseconds
// and the driver, polling the status query, sees most boundaries only once
// they have passed; real API servers are slower than the test ones anyway.
const apiDelay = 250 * time.Millisecond

// slowKubeconfig writes a copy of kubeconfig whose server is a proxy that
// holds every chunk the client sends for delay.
func slowKubeconfig(ctx context.Context, kubeconfig, dir string, delay time.Duration) (string, error) {
	data, err := os.ReadFile(kubeconfig)
	if err != nil {
		return "", err
	}
	server := regexp.MustCompile(`server: https://(127\.0\.0\.1:\d+)`)
	upstream := server.FindSubmatch(data)
	if upstream == nil {
		return "", os.ErrNotExist
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() { <-ctx.Done(); ln.Close() }()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go proxy(c, string(upstream[1]), delay)
		}
	}()
	path := filepath.Join(dir, "slow-kubeconfig")
	slow := server.ReplaceAll(data, []byte("server: https://"+ln.Addr().String()))
	return path, os.WriteFile(path, slow, 0o600)
}

// proxy forwards c to upstream; what c sends arrives delay later, in order.
func proxy(c net.Conn, upstream string, delay time.Duration) {
	u, err := net.Dial("tcp", upstream)
	if err != nil {
		c.Close()
		return
	}
	type chunk struct {
		at time.Time
		b  []byte
	}
	q := make(chan chunk, 1024)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := c.Read(buf)
			if n > 0 {
				q <- chunk{time.Now().Add(delay), buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		defer u.(*net.TCPConn).CloseWrite()
		for ch := range q {
			time.Sleep(time.Until(ch.at))
			if _, err := u.Write(ch.b); err != nil {
				return
			}
		}
	}()
	go func() {
		_, _ = io.Copy(c, u)
		c.Close()
		u.Close()
	}()
}
