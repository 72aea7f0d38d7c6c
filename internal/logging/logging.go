// Package logging builds the zap logger both binaries use and adapts it to
// Temporal's log.Logger, so that SDK, workflow and activity logs come out in
// one format.
package logging

import (
	"fmt"
	"io"

	"go.temporal.io/sdk/log"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New returns a logger writing to w at level ("debug", "info", "warn",
// "error") in format "json" (production) or "console".
func New(w io.Writer, level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	var enc zapcore.Encoder
	switch format {
	case "json":
		cfg := zap.NewProductionEncoderConfig()
		cfg.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(cfg)
	case "console":
		cfg := zap.NewDevelopmentEncoderConfig()
		cfg.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		enc = zapcore.NewConsoleEncoder(cfg)
	default:
		return nil, fmt.Errorf("--log-format %q: want json or console", format)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), lvl)), nil
}

// Temporal adapts a zap logger to Temporal's key-value logger.
type Temporal struct{ z *zap.Logger }

var _ log.WithLogger = Temporal{}

// NewTemporal wraps z.
func NewTemporal(z *zap.Logger) Temporal { return Temporal{z: z.WithOptions(zap.AddCallerSkip(1))} }

func (t Temporal) Debug(msg string, keyvals ...any) { t.z.Debug(msg, fields(keyvals)...) }
func (t Temporal) Info(msg string, keyvals ...any)  { t.z.Info(msg, fields(keyvals)...) }
func (t Temporal) Warn(msg string, keyvals ...any)  { t.z.Warn(msg, fields(keyvals)...) }
func (t Temporal) Error(msg string, keyvals ...any) { t.z.Error(msg, fields(keyvals)...) }

// With returns a logger that adds keyvals to every entry.
func (t Temporal) With(keyvals ...any) log.Logger { return Temporal{z: t.z.With(fields(keyvals)...)} }

func fields(keyvals []any) []zap.Field {
	out := make([]zap.Field, 0, len(keyvals)/2+1)
	for i := 0; i < len(keyvals); i += 2 {
		key, ok := keyvals[i].(string)
		if !ok {
			key = fmt.Sprint(keyvals[i])
		}
		if i+1 == len(keyvals) {
			out = append(out, zap.Any("extra", keyvals[i]))
			break
		}
		out = append(out, zap.Any(key, keyvals[i+1]))
	}
	return out
}
