package main

import (
	"context"
	"errors"
	"math/rand"
	"strconv"
	"strings"

	"github.com/distribworks/dkron/v4/dkron"
	"github.com/distribworks/dkron/v4/types"
	"github.com/hashicorp/serf/serf"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A run of a one-node job (every tag's cardinality 1, e.g. `server: "true:1"`)
// that the leader hands to a node that has just died is lost in Dkron: the
// node is still "alive" in Serf for a few seconds, the leader's call to it
// fails (after the 10 s Dkron's dial waits), and Dkron logs the error and
// forgets the run (dkron/run.go). This agent's leader hands such a run to
// another node that qualifies, but only when the call failed while dialling:
// then no byte of it reached the first node, so the run cannot have started
// there. A call that broke later may
// have started the job, and is left as Dkron leaves it.

// redispatchClient is Dkron's gRPC client with that one change in AgentRun.
type redispatchClient struct {
	dkron.DkronGRPCClient
	agent  *dkron.Agent
	logger *logrus.Entry
}

func (c *redispatchClient) AgentRun(addr string, job *types.Job, execution *types.Execution) error {
	err := c.DkronGRPCClient.AgentRun(addr, job, execution)
	if err == nil || !neverConnected(err) {
		return err
	}
	tags, cardinality := bareTags(job.GetTags())
	if cardinality != 1 {
		return err
	}
	others := qualifyingAddresses(c.agent.Members(), tags, c.agent.Config().Region, addr)
	rand.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
	for _, other := range others {
		c.logger.WithFields(logrus.Fields{"job_name": job.GetName(), "failed": addr, "node": other}).
			Warn("agent: the node chosen for the run did not answer; handing the run to another")
		if err = c.DkronGRPCClient.AgentRun(other, job, execution); err == nil || !neverConnected(err) {
			return err
		}
	}
	return err
}

// neverConnected: the call failed before any connection to the node existed.
// Dkron dials with grpc.WithBlock and a 10 s deadline (GRPCClient.Connect), so
// a node that does not answer is the dial's own context.DeadlineExceeded; a
// connection lost after it was made is a gRPC status instead.
func neverConnected(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		_, isStatus := status.FromError(err)
		return !isStatus
	}
	s, ok := status.FromError(err)
	return ok && s.Code() == codes.Unavailable && strings.Contains(s.Message(), "while dialing")
}

// bareTags is Dkron's reading of a job's tags (dkron/tags.go): "value:N" asks
// for N nodes with the tag's value; the smallest N counts (0: none given).
func bareTags(tags map[string]string) (map[string]string, int) {
	bare := make(map[string]string, len(tags))
	cardinality := 0
	for key, value := range tags {
		name, count, limited := strings.Cut(value, ":")
		bare[key] = name
		if !limited {
			continue
		}
		n, err := strconv.Atoi(count)
		if err != nil {
			n = 0
		}
		if cardinality == 0 || n < cardinality {
			cardinality = n
		}
	}
	return bare, cardinality
}

// qualifyingAddresses are the RPC addresses of the alive members of the
// region with all the tags (as Dkron's getQualifyingNodes), but `except`.
func qualifyingAddresses(members []serf.Member, tags map[string]string, region, except string) []string {
	var found []string
	for _, member := range members {
		if member.Status != serf.StatusAlive || member.Tags["region"] != region {
			continue
		}
		matches := true
		for key, value := range tags {
			if member.Tags[key] != value {
				matches = false
				break
			}
		}
		addr, ok := member.Tags["rpc_addr"]
		if !ok {
			addr = member.Addr.String()
		}
		if matches && addr != except {
			found = append(found, addr)
		}
	}
	return found
}
