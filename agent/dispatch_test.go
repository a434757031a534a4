package main

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/distribworks/dkron/v4/types"
	"github.com/hashicorp/serf/serf"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// A call to a port nobody listens on fails while dialling (nothing reached a
// node: the run may go elsewhere); a call that got an answer did not.
func TestOnlyACallThatNeverConnectedIsHandedOn(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := closed.Addr().String()
	_ = closed.Close()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := types.NewAgentClient(conn).AgentRun(ctx, &types.AgentRunRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if err == nil || !neverConnected(err) {
		t.Fatalf("a closed port: %v", err)
	}
	// Dkron's own dial blocks until its deadline (GRPCClient.Connect).
	short, stop := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer stop()
	//nolint:staticcheck // DialContext with WithBlock is what Dkron 4.0.5 calls
	if _, err := grpc.DialContext(short, addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithBlock()); err == nil || !neverConnected(err) {
		t.Fatalf("Dkron's blocking dial to a closed port: %v", err)
	}

	// A server that answers, with an error of its own: the call connected.
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := grpc.NewServer()
	types.RegisterAgentServer(server, &types.UnimplementedAgentServer{})
	go func() { _ = server.Serve(listener) }()
	defer server.Stop()
	answering, err := grpc.NewClient(listener.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer answering.Close()
	stream, err = types.NewAgentClient(answering).AgentRun(ctx, &types.AgentRunRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if err == nil || neverConnected(err) {
		t.Fatalf("a server that answered: %v", err)
	}
}

func TestOneNodeJobsAloneAreHandedOnAndOnlyToNodesThatQualify(t *testing.T) {
	if _, n := bareTags(map[string]string{"server": "true:1", "zone": "a"}); n != 1 {
		t.Fatalf("true:1 with another tag: cardinality %d", n)
	}
	if _, n := bareTags(map[string]string{"server": "true"}); n == 1 {
		t.Fatal("a job for every server is not a one-node job")
	}
	if _, n := bareTags(map[string]string{"server": "true:2"}); n == 1 {
		t.Fatal("a two-node job is not a one-node job")
	}
	tags, _ := bareTags(map[string]string{"server": "true:1"})
	member := func(name, rpc, region string, status serf.MemberStatus, server string) serf.Member {
		return serf.Member{Name: name, Status: status, Tags: map[string]string{"rpc_addr": rpc, "region": region, "server": server}}
	}
	members := []serf.Member{
		member("n1", "10.0.0.1:6868", "global", serf.StatusAlive, "true"),
		member("n2", "10.0.0.2:6868", "global", serf.StatusAlive, "true"),
		member("n3", "10.0.0.3:6868", "global", serf.StatusFailed, "true"),
		member("n4", "10.0.0.4:6868", "other", serf.StatusAlive, "true"),
		member("c1", "10.0.0.5:6868", "global", serf.StatusAlive, "false"),
	}
	got := qualifyingAddresses(members, tags, "global", "10.0.0.1:6868")
	if len(got) != 1 || got[0] != "10.0.0.2:6868" {
		t.Fatalf("the other nodes that qualify: %v", got)
	}
}
