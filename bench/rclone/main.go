// Command rclone is the rclone command line at the version go.mod requires,
// with only what the benchmark runs (bisync, lsf, version; the local and s3
// backends): rclone's own main imports every backend and command, whose
// modules are not in this module's go.sum, so `go build
// github.com/rclone/rclone` does not build offline here. The flags, the
// bisync engine and the backends are rclone's own code, unchanged; package
// bench builds this with fs.Version set to the module's version and runs it
// as the seed's command.
package main

import (
	_ "github.com/rclone/rclone/backend/local"
	_ "github.com/rclone/rclone/backend/s3"
	"github.com/rclone/rclone/cmd"
	_ "github.com/rclone/rclone/cmd/bisync"
	_ "github.com/rclone/rclone/cmd/lsf"
	_ "github.com/rclone/rclone/cmd/version"
)

func main() { cmd.Main() }
