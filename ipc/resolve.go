package ipc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// PathResolve answers POST (a [ResolveRequest]) by settling a conflict.
const PathResolve = "/v0/resolve"

// How a conflict is settled ([ResolveRequest.Keep]).
const (
	KeepMine   = "mine"   // this device's version becomes the note
	KeepTheirs = "theirs" // the other version (the conflict file's) becomes the note
	KeepBoth   = "both"   // both stay: the conflict file is renamed to a plain note next to it
)

// ResolveRequest is the body of POST /v0/resolve: settle the conflict of
// Path (a note, or one of its conflict files, relative to the notes
// folder) by keeping Keep. With a note that has several conflict files,
// Conflict names the one meant ("" : the only one, else an error).
type ResolveRequest struct {
	Path     string `json:"path"`
	Conflict string `json:"conflict,omitempty"`
	Keep     string `json:"keep"`
}

// ResolveResult is the answer to POST /v0/resolve.
type ResolveResult struct {
	Folder string `json:"folder"`
	// Note is the note the conflict was about, as it now is.
	Note string `json:"note"`
	// Kept is the note's path that holds the version kept as well, for
	// KeepBoth (empty otherwise).
	Kept string `json:"kept,omitempty"`
	// Removed are the files removed (each kept in the version store where
	// versions are on).
	Removed []string `json:"removed"`
}

// Resolver may be implemented by a [Backend] to serve POST /v0/resolve.
// Errors wrap [ErrNotFound] (no such conflict) or [ErrInvalid] (a bad
// path, a Keep that is not mine, theirs or both, or several conflict files
// and no Conflict) when they apply.
type Resolver interface {
	Resolve(ctx context.Context, req ResolveRequest) (ResolveResult, error)
}

// Resolve settles a conflict (see [ResolveRequest]).
func (c *Client) Resolve(ctx context.Context, req ResolveRequest) (ResolveResult, error) {
	var res ResolveResult
	err := c.do(ctx, "resolve", http.MethodPost, PathResolve, req, &res)
	return res, err
}

func (s *Server) handleResolve(w http.ResponseWriter, r *http.Request) error {
	rv, ok := s.b.(Resolver)
	if !ok {
		return fmt.Errorf("resolve: %w", ErrNotImplemented)
	}
	var req ResolveRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid", "resolve: bad request body: "+err.Error())
		return nil
	}
	switch {
	case req.Path == "":
		writeError(w, http.StatusBadRequest, "invalid", "resolve: give the path of a note or of its conflict file")
		return nil
	case req.Keep != KeepMine && req.Keep != KeepTheirs && req.Keep != KeepBoth:
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("resolve: keep %q: want mine, theirs or both", req.Keep))
		return nil
	}
	res, err := rv.Resolve(r.Context(), req)
	if err != nil {
		return err
	}
	if res.Removed == nil {
		res.Removed = []string{}
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
