// Package loopback hands out free TCP ports on 127.0.0.1 for the processes
// tests and the demo start.
package loopback

import (
	"fmt"
	"net"
)

// FreePorts asks the kernel for n distinct free loopback ports. They are
// free when returned; a process must bind them soon after.
func FreePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("no free loopback port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
