//go:build !linux

package relay

import (
	"context"
	"net"
)

// Relay serves a listener on event loops; on this system it cannot.
type Relay struct{}

// Supported reports whether this system has the event loops.
const Supported = false

// New fails with ErrUnsupported.
func New(*net.TCPListener, Options) (*Relay, error) { return nil, ErrUnsupported }

func (*Relay) Serve() error                   { return ErrUnsupported }
func (*Relay) Shutdown(context.Context) error { return nil }
func (*Relay) Handoffs() uint64               { return 0 }
func (*Relay) Loops() int                     { return 0 }
func (*Relay) Streams() int                   { return 0 }
