package csm

import "context"

type tenantKey struct{}

// WithTenant makes the calls made with the returned context send tenant in
// the Cray-Tenant-Name header instead of Config.Tenant. BOS v2 keys session
// templates by tenant and name, so restoring a template saved from a
// tenant needs that tenant's header on its GET, PUT and validation.
func WithTenant(ctx context.Context, tenant string) context.Context {
	return context.WithValue(ctx, tenantKey{}, tenant)
}

// tenant is the header value for a call made with ctx ("" sends none).
func (c *Client) tenant(ctx context.Context) string {
	if t, ok := ctx.Value(tenantKey{}).(string); ok {
		return t
	}
	return c.cfg.Tenant
}
