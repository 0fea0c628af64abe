//go:build !linux && !darwin

package packaging

import (
	"context"
	"errors"
	"fmt"

	"github.com/kardianos/service"
)

// UnitPath is empty: the service lives in the service manager's registry.
func (i *Installer) UnitPath() string { return "" }

// Installed is ManagerService when the service manager knows the agent's
// service, else "".
func (i *Installer) Installed(context.Context) string {
	s, err := i.service(Params{AgentPath: "bm-agent"})
	if err != nil {
		return ""
	}
	if _, err := s.Status(); err != nil {
		return ""
	}
	return ManagerService
}

// spawnDetached is not used here: the service manager starts the agent.
func spawnDetached(string, []string, []string) error { return errors.ErrUnsupported }

// noProgram satisfies service.Interface for install and control calls,
// which never run the program.
type noProgram struct{}

func (noProgram) Start(service.Service) error { return nil }
func (noProgram) Stop(service.Service) error  { return nil }

func (i *Installer) service(p Params) (service.Service, error) {
	args := []string{"run"}
	if p.Folder != "" {
		args = append(args, "--folder", p.Folder)
	}
	env := map[string]string{}
	for k, v := range p.Env {
		env[k] = v
	}
	if p.Home != "" {
		env["BM_AGENT_HOME"] = p.Home
	}
	s, err := service.New(noProgram{}, &service.Config{
		Name:        ServiceName,
		DisplayName: "Basic Memory sync agent",
		Description: "Keeps the Basic Memory notes folder and the cloud bucket in step.",
		Executable:  p.AgentPath,
		Arguments:   args,
		EnvVars:     env,
		Option:      service.KeyValue{"UserService": true, "OnFailure": "restart"},
	})
	if err != nil {
		return nil, fmt.Errorf("packaging: %w", err)
	}
	return s, nil
}

// Install registers the agent with the platform's service manager through
// kardianos/service (the Windows service control manager) and starts it.
// No test here can reach Windows; it is compile-checked only.
func (i *Installer) Install(_ context.Context, p Params, start bool) (Result, error) {
	res := Result{Manager: ManagerService}
	if err := p.validate(); err != nil {
		return res, err
	}
	s, err := i.service(p)
	if err != nil {
		return res, err
	}
	if err := s.Install(); err != nil {
		return res, fmt.Errorf("install: %w", err)
	}
	res.Commands = append(res.Commands, "install service "+ServiceName)
	if start {
		if err := s.Start(); err != nil {
			_ = s.Uninstall() // what it wrote goes with the failure
			return res, fmt.Errorf("install: start: %w", err)
		}
		res.Commands = append(res.Commands, "start service "+ServiceName)
		res.Started = true
	}
	return res, nil
}

// Uninstall stops and removes the service.
func (i *Installer) Uninstall(ctx context.Context) (Result, error) {
	res := Result{Manager: i.Installed(ctx)}
	s, err := i.service(Params{AgentPath: "bm-agent"})
	if err != nil {
		return res, err
	}
	_ = s.Stop()
	if err := s.Uninstall(); err != nil {
		return res, fmt.Errorf("uninstall: %w", err)
	}
	res.Commands = append(res.Commands, "uninstall service "+ServiceName)
	return res, nil
}
