package notify

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/godbus/dbus/v5"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// The freedesktop.org notification service
// (https://specifications.freedesktop.org/notification-spec/).
const (
	busName    = "org.freedesktop.Notifications"
	busPath    = dbus.ObjectPath("/org/freedesktop/Notifications")
	busIface   = "org.freedesktop.Notifications"
	appName    = "bm-agent"
	actionOpen = "default" // the action a click on the notification invokes
)

// dbusSender sends to org.freedesktop.Notifications on the session bus.
type dbusSender struct {
	conn    *dbus.Conn
	obj     dbus.BusObject
	log     *slog.Logger
	clicked chan uint32
	once    sync.Once
}

// NewDesktopSender connects to the session bus (DBUS_SESSION_BUS_ADDRESS)
// and returns a sender to its notification service, which also reports
// clicks (the ActionInvoked signal).
func NewDesktopSender(logger *slog.Logger) (Sender, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		return nil, fmt.Errorf("desktop sender: session bus: %w", err)
	}
	if err := conn.AddMatchSignal(dbus.WithMatchObjectPath(busPath), dbus.WithMatchInterface(busIface),
		dbus.WithMatchMember("ActionInvoked")); err != nil {
		conn.Close()
		return nil, fmt.Errorf("desktop sender: watch clicks: %w", err)
	}
	s := &dbusSender{conn: conn, obj: conn.Object(busName, busPath), log: logger, clicked: make(chan uint32, 16)}
	signals := make(chan *dbus.Signal, 16)
	conn.Signal(signals)
	go s.clicks(signals)
	return s, nil
}

// clicks turns ActionInvoked signals into IDs on s.clicked, until the
// connection closes (which closes signals).
func (s *dbusSender) clicks(signals <-chan *dbus.Signal) {
	defer close(s.clicked)
	for sig := range signals {
		if sig.Name != busIface+".ActionInvoked" || len(sig.Body) < 2 {
			continue
		}
		id, ok1 := sig.Body[0].(uint32)
		action, ok2 := sig.Body[1].(string)
		if !ok1 || !ok2 {
			continue
		}
		s.log.Debug("notification action", "id", id, "action", action)
		select {
		case s.clicked <- id:
		default:
		}
	}
}

// Send calls Notify(app_name, replaces_id, app_icon, summary, body,
// actions, hints, expire_timeout).
func (s *dbusSender) Send(ctx context.Context, m Message) (uint32, error) {
	icon, urgency := "dialog-information", byte(0)
	switch m.Level {
	case ipc.LevelWarning:
		icon, urgency = "dialog-warning", 1
	case ipc.LevelError:
		icon, urgency = "dialog-error", 2
	}
	hints := map[string]dbus.Variant{
		"urgency":  dbus.MakeVariant(urgency),
		"category": dbus.MakeVariant("transfer"),
	}
	var id uint32
	err := s.obj.CallWithContext(ctx, busIface+".Notify", 0,
		appName, uint32(0), icon, m.Title, m.Body, []string{actionOpen, "Open"}, hints, int32(-1)).Store(&id)
	if err != nil {
		return 0, fmt.Errorf("notify %s: %w", m.Kind, err)
	}
	return id, nil
}

func (s *dbusSender) Clicked() <-chan uint32 { return s.clicked }

func (s *dbusSender) Close() error {
	var err error
	s.once.Do(func() { err = s.conn.Close() })
	return err
}
