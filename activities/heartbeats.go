package activities

import (
	"context"
	"encoding/json"
	"sync"
)

// CountHeartbeats, for tests, records every heartbeat's details as JSON, unthrottled,
// until the returned function is called; it still passes each to the SDK.
func CountHeartbeats() (beats func() []string, stop func()) {
	var mu sync.Mutex
	var got []string
	orig := recordHeartbeat
	recordHeartbeat = func(ctx context.Context, details ...any) {
		if len(details) > 0 {
			b, _ := json.Marshal(details[0])
			mu.Lock()
			got = append(got, string(b))
			mu.Unlock()
		}
		orig(ctx, details...)
	}
	return func() []string {
			mu.Lock()
			defer mu.Unlock()
			return append([]string(nil), got...)
		}, func() {
			recordHeartbeat = orig
		}
}
