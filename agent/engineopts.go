package agent

import (
	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// engineOptions maps a sync request onto the engine's pass options.
func engineOptions(trigger string, req ipc.SyncRequest, profile string) syncer.PassOptions {
	return syncer.PassOptions{
		Trigger: trigger,
		Resync:  req.Resync,
		DryRun:  req.DryRun,
		Force:   req.Force,
		Profile: syncer.Profile(profile),
		// a sync the person asked for tries the failed files again now
		RetryFailed: trigger == "manual",
	}
}

// failedItems turns the engine's failed paths into the wire form.
func failedItems(fs []syncer.Failure) []ipc.FailedItem {
	out := make([]ipc.FailedItem, 0, len(fs))
	for _, f := range fs {
		if f.Transient {
			continue // the next pass takes it; nobody need act
		}
		out = append(out, ipc.FailedItem{Path: f.Path, Dir: f.Dir, Side: f.Side, Reason: ipc.Code(f.Reason),
			Error: f.Error, Advice: f.Advice, Since: f.Since, RetryAt: f.RetryAt})
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// planOf turns the engine's plan into the wire form: what a dry run would
// do (nil for a real pass: the counts say what it did).
// changesOf is what a real pass changed, for its summary (at most
// ipc.MaxPassChanges files).
func changesOf(res syncer.Result, dryRun bool) []ipc.PlanItem {
	if dryRun || len(res.Plan) == 0 {
		return nil
	}
	out := make([]ipc.PlanItem, 0, min(len(res.Plan), ipc.MaxPassChanges))
	for _, c := range res.Plan {
		if len(out) == ipc.MaxPassChanges {
			break
		}
		out = append(out, ipc.PlanItem{Action: c.Action, Side: c.Side, Path: c.Path})
	}
	return out
}

func planOf(res syncer.Result, dryRun bool) *ipc.Plan {
	if !dryRun {
		return nil
	}
	p := &ipc.Plan{Items: make([]ipc.PlanItem, 0, len(res.Plan))}
	for _, c := range res.Plan {
		p.Items = append(p.Items, ipc.PlanItem{Action: c.Action, Side: c.Side, Path: c.Path})
	}
	return p
}
