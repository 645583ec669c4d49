package sidecar

import (
	"context"
	"fmt"
	"log/slog"
)

// redisLogger sends go-redis's own messages (reconnects, pool errors) to
// slog, as warnings tagged component=redis.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, args ...any) {
	l.log.WarnContext(ctx, fmt.Sprintf(format, args...), "component", "redis")
}
