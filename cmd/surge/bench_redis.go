package main

import "fmt"

func openRedisBench(c stockBenchConfig) (batcher, func() int64, func() error, func(), error) {
	return nil, nil, nil, nil, fmt.Errorf("redis backend: not built yet")
}
