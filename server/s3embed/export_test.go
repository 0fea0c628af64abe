package s3embed

import "time"

// SetClock sets the clock the endpoint stamps objects and uploads with.
func SetClock(s *Server, now func() time.Time) { s.backend.now = now }
