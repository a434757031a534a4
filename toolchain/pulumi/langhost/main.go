// Command pulumi-language-python is a small Python language host for the
// Pulumi CLI, written for this project because the upstream host's Go module
// is not served by the module proxy these machines can reach.
//
// It does what `pulumi up` needs and nothing more: it answers the engine's
// LanguageRuntime RPCs and runs the program through the Python SDK's own
// `pulumi-language-python-exec` script (installed beside this binary), with
// the interpreter of the virtualenv named in Pulumi.yaml. Dependencies are
// installed by the project's setup, so InstallDependencies does nothing.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// version is stamped at link time with the CLI version it is built with.
var version = "0.0.0"

// exitCodeUserMessage is the exec script's code for "an error was already
// shown to the user"; the engine must not print a second one.
const exitCodeUserMessage = 32

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	execScript string

	mu            sync.Mutex
	engineAddress string
	watching      sync.Once
	programs      map[*exec.Cmd]struct{}
}

// engineCheckPeriod is how often the engine's health is checked. The engine
// starts this host in a process group of its own, so an engine that is killed
// (kill -9, a crash) does not take the host along: as Pulumi's own language
// hosts do, it exits, and ends the program it runs, once the engine is gone.
const engineCheckPeriod = time.Second

func main() {
	var engineAddress string
	for _, arg := range os.Args[1:] {
		// Flags (for example -tracing) are accepted and ignored; the first
		// positional argument is the engine's address.
		if !strings.HasPrefix(arg, "-") && engineAddress == "" {
			engineAddress = arg
		}
	}

	self, err := os.Executable()
	if err != nil {
		fail(err)
	}
	if resolved, err := filepath.EvalSymlinks(self); err == nil {
		self = resolved
	}
	h := &host{
		execScript: filepath.Join(filepath.Dir(self), "pulumi-language-python-exec"),
		programs:   map[*exec.Cmd]struct{}{},
	}
	if engineAddress != "" {
		h.watchEngine(engineAddress)
	}
	if _, err := os.Stat(h.execScript); err != nil {
		fail(fmt.Errorf("the Python exec script must sit beside the language host: %w", err))
	}

	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, h)
			return nil
		},
	})
	if err != nil {
		fail(fmt.Errorf("could not start the language host: %w", err))
	}
	// The engine reads the port from our first line of output.
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "pulumi-language-python: %v\n", err)
	os.Exit(1)
}

func (h *host) Handshake(
	_ context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if req.GetEngineAddress() != "" {
		h.engineAddress = req.GetEngineAddress()
		h.watchEngine(req.GetEngineAddress())
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

// watchEngine starts, once, the check that ends this host and its programs
// when the engine at address stops answering.
func (h *host) watchEngine(address string) {
	h.watching.Do(func() {
		h.engineAddress = address
		gone, lost := context.WithCancel(context.Background())
		if err := rpcutil.Healthcheck(gone, address, engineCheckPeriod, lost); err != nil {
			fail(fmt.Errorf("cannot watch the engine at %s: %w", address, err))
		}
		go func() {
			<-gone.Done()
			h.mu.Lock()
			for cmd := range h.programs {
				_ = cmd.Process.Kill()
			}
			h.mu.Unlock()
			fmt.Fprintf(os.Stderr, "pulumi-language-python: the engine at %s is gone; exiting\n", address)
			os.Exit(1)
		}()
	})
}

func (h *host) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

// Plugins are installed by the project's setup and loaded on first use, so
// the program declares none up front.
func (h *host) GetRequiredPlugins(
	context.Context, *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

func (h *host) GetRequiredPackages(
	context.Context, *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

func (h *host) InstallDependencies(
	*pulumirpc.InstallDependenciesRequest, grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse],
) error {
	return nil
}

func (h *host) GetProgramDependencies(
	context.Context, *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	return &pulumirpc.GetProgramDependenciesResponse{}, nil
}

func (h *host) About(_ context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	python, _, err := interpreter(req.GetInfo())
	if err != nil {
		return nil, err
	}
	return &pulumirpc.AboutResponse{Executable: python, Version: version}, nil
}

func (h *host) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	info := req.GetInfo()
	python, venv, err := interpreter(info)
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}

	h.mu.Lock()
	engine := h.engineAddress
	h.mu.Unlock()

	args := []string{"-u", h.execScript}
	flag := func(name, value string) {
		if value != "" {
			args = append(args, "--"+name, value)
		}
	}
	flag("monitor", req.GetMonitorAddress())
	flag("engine", engine)
	flag("project", req.GetProject())
	flag("stack", req.GetStack())
	flag("pwd", req.GetPwd())
	flag("dry_run", fmt.Sprint(req.GetDryRun()))
	flag("parallel", fmt.Sprint(req.GetParallel()))
	flag("organization", req.GetOrganization())
	flag("root_directory", info.GetRootDirectory())
	program := info.GetEntryPoint()
	if program == "" {
		program = "."
	}
	args = append(args, program)
	args = append(args, req.GetArgs()...)

	// The exec script expects a JSON object and a JSON list, never null.
	configMap := req.GetConfig()
	if configMap == nil {
		configMap = map[string]string{}
	}
	config, err := json.Marshal(configMap)
	if err != nil {
		return nil, err
	}
	secretKeys, err := json.Marshal(append([]string{}, req.GetConfigSecretKeys()...))
	if err != nil {
		return nil, err
	}

	cmd := exec.CommandContext(ctx, python, args...)
	cmd.Dir = info.GetProgramDirectory()
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	cmd.Env = append(virtualenvEnv(os.Environ(), venv),
		"PULUMI_CONFIG="+string(config),
		"PULUMI_CONFIG_SECRET_KEYS="+string(secretKeys),
	)

	var result pulumirpc.RunResponse
	err = h.runProgram(cmd)
	if err != nil {
		var exitErr *exec.ExitError
		switch {
		case errors.As(err, &exitErr) && exitErr.ExitCode() == exitCodeUserMessage:
			result.Bail = true
		case errors.As(err, &exitErr):
			result.Error = fmt.Sprintf("program exited with code %d", exitErr.ExitCode())
		default:
			result.Error = fmt.Sprintf("could not run %s: %v", python, err)
		}
	}
	return &result, nil
}

// runProgram runs cmd as one of the programs to end if the engine goes.
func (h *host) runProgram(cmd *exec.Cmd) error {
	h.mu.Lock()
	if err := cmd.Start(); err != nil {
		h.mu.Unlock()
		return err
	}
	h.programs[cmd] = struct{}{}
	h.mu.Unlock()
	err := cmd.Wait()
	h.mu.Lock()
	delete(h.programs, cmd)
	h.mu.Unlock()
	return err
}

// interpreter finds the Python to run: the virtualenv named by the
// `virtualenv` runtime option (relative to the project root), else python3.
func interpreter(info *pulumirpc.ProgramInfo) (python string, venv string, err error) {
	if opts := info.GetOptions(); opts != nil {
		if v, ok := opts.GetFields()["virtualenv"]; ok && v.GetStringValue() != "" {
			venv = v.GetStringValue()
			if !filepath.IsAbs(venv) {
				venv = filepath.Join(info.GetRootDirectory(), venv)
			}
			python = filepath.Join(venv, "bin", "python")
			if _, statErr := os.Stat(python); statErr != nil {
				return "", "", fmt.Errorf(
					"the virtualenv %s named in Pulumi.yaml has no bin/python; run `make setup`", venv)
			}
			return python, venv, nil
		}
	}
	python, err = exec.LookPath("python3")
	return python, "", err
}

// virtualenvEnv activates venv for the child the way `activate` would.
func virtualenvEnv(env []string, venv string) []string {
	if venv == "" {
		return env
	}
	out := make([]string, 0, len(env)+2)
	for _, kv := range env {
		switch {
		case strings.HasPrefix(kv, "PYTHONHOME="):
		case strings.HasPrefix(kv, "PATH="):
			out = append(out, "PATH="+filepath.Join(venv, "bin")+string(os.PathListSeparator)+kv[len("PATH="):])
		default:
			out = append(out, kv)
		}
	}
	return append(out, "VIRTUAL_ENV="+venv)
}
