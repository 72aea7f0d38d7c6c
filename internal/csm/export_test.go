package csm

import "time"

// SetClock replaces the client's clock (token refresh timing) in tests.
func SetClock(c *Client, now func() time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
}
