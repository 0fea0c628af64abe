package syncer

import (
	"fmt"
	"regexp"
	"strconv"
)

// MaxDeleteError is the error of a pass that stopped because more files
// were deleted on one side than the max-delete percentage allows. Nothing
// was changed. It wraps ErrMaxDeleteExceeded; read it with errors.As.
//
// Its message keeps bisync's wording, "too many deletes (>25%, 40 of 160)
// on Path2 (the bucket)", which older callers parse.
type MaxDeleteError struct {
	Deletes int    // files deleted on Side since the last pass
	Total   int    // files Side had at the last pass
	Side    string // SideLocal (Path1, the notes folder) or SideCloud (Path2, the bucket)
	Percent int    // the max-delete percentage that was exceeded (0 if unknown)
}

// Error returns "too many deletes (>P%, N of M) on PathX (where)".
func (e *MaxDeleteError) Error() string {
	path, where := "Path1", "the notes folder"
	if e.Side == SideCloud {
		path, where = "Path2", "the bucket"
	}
	limit := ""
	if e.Percent > 0 {
		limit = fmt.Sprintf(">%d%%, ", e.Percent)
	}
	return fmt.Sprintf("too many deletes (%s%d of %d) on %s (%s)", limit, e.Deletes, e.Total, path, where)
}

// Unwrap makes errors.Is(err, ErrMaxDeleteExceeded) true.
func (e *MaxDeleteError) Unwrap() error { return ErrMaxDeleteExceeded }

// maxDeleteLine matches bisync's max-delete abort log line:
// "too many deletes (>25%, 40 of 160) on Path2 ..." (or "... of 160 after
// excluding 3 tracked renames) on Path1 ...").
var maxDeleteLine = regexp.MustCompile(`too many deletes \((?:>(\d+)%, )?(\d+) of (\d+)[^)]*\) on (Path1|Path2)`)

// parseMaxDelete reads the counts from bisync's abort line; nil if msg is
// not one.
func parseMaxDelete(msg string) *MaxDeleteError {
	m := maxDeleteLine.FindStringSubmatch(msg)
	if m == nil {
		return nil
	}
	e := &MaxDeleteError{Side: SideLocal}
	e.Percent, _ = strconv.Atoi(m[1])
	e.Deletes, _ = strconv.Atoi(m[2])
	e.Total, _ = strconv.Atoi(m[3])
	if m[4] == "Path2" {
		e.Side = SideCloud
	}
	return e
}
