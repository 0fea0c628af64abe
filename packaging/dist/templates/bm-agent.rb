# Homebrew formula for bm-agent {{.Version}}, written by `make dist`
# (packaging/dist) with the release's checksums. Put it in a tap
# (Formula/bm-agent.rb) after uploading the archives to {{.URL}}.
class BmAgent < Formula
  desc "Keeps your Basic Memory notes folder and your cloud bucket in step"
  homepage "https://basicmemory.com"
  version "{{.Version}}"
{{- range .OSes}}

  on_{{.Brew}} do
{{- range .Archs}}
    on_{{.Brew}} do
      url "{{$.URL}}/{{.File}}"
      sha256 "{{.SHA256}}"
    end
{{- end}}
  end
{{- end}}

  def install
    bin.install "bm-agent", "bm-server"
    # Only in a build made on a Mac (cgo): see caveats.
    bin.install "bm-tray" if File.exist?("bm-tray")
    bash_completion.install "completions/bash/bm-agent", "completions/bash/bm-server"
    zsh_completion.install "completions/zsh/_bm-agent", "completions/zsh/_bm-server"
    fish_completion.install "completions/fish/bm-agent.fish", "completions/fish/bm-server.fish"
  end

  # `brew services start bm-agent` runs the daemon as a LaunchAgent of the
  # person (their keychain, their notes). `bm-agent setup` writes its own
  # LaunchAgent (~/Library/LaunchAgents/com.basicmemory.bm-agent.plist)
  # instead: use one or the other.
  service do
    run [opt_bin/"bm-agent", "run"]
    keep_alive successful_exit: false
    process_type :background
    log_path var/"log/bm-agent.log"
    error_log_path var/"log/bm-agent.log"
  end

  def caveats
    <<~EOS
      Start the agent at login, sign in and run the first sync with:
        bm-agent setup
      It writes a LaunchAgent (~/Library/LaunchAgents/com.basicmemory.bm-agent.plist);
      `brew services start bm-agent` is the other way, not both.

      The menu bar icon (bm-tray) is not in the macOS archives: fyne.io/systray
      needs cgo and the macOS SDK, so it is built on a Mac:
        CGO_ENABLED=1 go build -o "$(brew --prefix)/bin/" ./cmd/bm-tray
      and started at login as a Login Item (System Settings > General > Login Items).
    EOS
  end

  test do
    assert_match version.to_s, shell_output("#{bin}/bm-agent --version")
    assert_match version.to_s, shell_output("#{bin}/bm-server --version")
  end
end
