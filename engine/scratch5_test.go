package engine

import (
	"context"
	"os"
	"runtime/pprof"
	"testing"
)

func TestScratchProfile(t *testing.T) {
	ctx := context.Background()
	e := MustNew(t, Options{})
	f, _ := os.Create("/tmp/route.prof")
	pprof.StartCPUProfile(f)
	for range 20000 {
		e.Route(ctx, benchRoute)
	}
	pprof.StopCPUProfile()
	f.Close()
}
