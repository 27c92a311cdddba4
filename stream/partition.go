package stream

import (
	"fmt"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// MaxPartitions bounds how many partitions a partitioned subject has.
const MaxPartitions = 1024

// Partition is the partition of a key among n: producers publish a record to
// Subject(prefix, Partition(key, n)), so every record of a key is read by the same task.
func Partition(key string, n int) int { return int(xxhash.Sum64String(key) % uint64(n)) }

// Subject is the subject of partition p of a partitioned subject.
func Subject(prefix string, p int) string { return prefix + "." + strconv.Itoa(p) }

// Assign is the static assignment of n partitions to the node with index node among nodes:
// partition p goes to node p mod nodes. Moving a partition is a configuration change: the node
// giving it up stops its task (its state is in the last checkpoint) and the node taking it over
// starts a task that restores that checkpoint and replays the log from its position.
func Assign(n, node, nodes int) ([]int, error) {
	if n < 1 || n > MaxPartitions || nodes < 1 || node < 0 || node >= nodes {
		return nil, fmt.Errorf("stream: cannot assign %d partitions to node %d of %d", n, node, nodes)
	}
	var ps []int
	for p := node; p < n; p += nodes {
		ps = append(ps, p)
	}
	return ps, nil
}
