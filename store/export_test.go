package store

import "time"

// NewMemoryWithSweep returns a Memory whose janitor runs every sweep.
func NewMemoryWithSweep(sweep time.Duration) *Memory { return newMemory(sweep) }
