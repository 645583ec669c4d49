package redis_test

import (
	"context"
	"os"
	"testing"

	goredis "github.com/redis/go-redis/v9"
)

// quietRedis drops go-redis's own log lines (dial failures while a test has
// stopped the server on purpose); the store reports failures as errors.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	goredis.SetLogger(quietRedis{})
	os.Exit(m.Run())
}
