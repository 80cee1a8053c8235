package sysimage

import (
	"errors"
	"net/http"
	"os/exec"

	"toride/appliance/api"
)

// InstallRequest is the body of POST /api/v1/system/image/install: a root image on the appliance (a file, or a
// device such as a USB stick's) and its SHA-256 ("" to read PATH.sha256).
type InstallRequest struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256,omitempty"`
}

// Installed is the answer of an installation.
type Installed struct {
	Slot    SlotStatus `json:"slot"`
	Message string     `json:"message"`
}

// Register routes GET /api/v1/system/image, POST /api/v1/system/image/install POST /api/v1/system/reboot and POST /api/v1/system/poweroff.
func (m *Images) Register(s *api.Server) {
	s.HandleFunc("GET /api/v1/system/image", func(*http.Request) (any, error) { return m.Status() })
	s.HandleFunc("POST /api/v1/system/image/install", func(r *http.Request) (any, error) {
		var req InstallRequest
		if err := api.DecodeJSON(r, &req); err != nil {
			return nil, err
		}
		if req.Path == "" {
			return nil, api.Errorf(http.StatusBadRequest, "bad_request", "path: the root image to install (a file or a device on the appliance)")
		}
		slot, err := m.Install(r.Context(), req.Path, req.SHA256)
		switch {
		case errors.Is(err, ErrNotAppliance):
			return nil, api.Errorf(http.StatusConflict, "not_appliance", "%v", err)
		case err != nil:
			return nil, api.Errorf(http.StatusBadRequest, "image_refused", "%v", err)
		}
		return Installed{Slot: slot, Message: "Installed " + slot.Version + " into slot " + slot.Name +
			": the next boot tries it once, and keeps it if torided comes up healthy (request system reboot)."}, nil
	})
	s.HandleFunc("POST /api/v1/system/reboot", m.power("reboot"))
	s.HandleFunc("POST /api/v1/system/poweroff", m.power("poweroff"))
}

// power answers a request to reboot or power off (systemctl's verb) the appliance.
func (m *Images) power(verb string) func(*http.Request) (any, error) {
	return func(*http.Request) (any, error) {
		if running, _ := m.bootArgs(); running == "" {
			return nil, api.Errorf(http.StatusConflict, "not_appliance", "%v: %s the host yourself", ErrNotAppliance, verb)
		}
		// systemd stops torided (and charon) cleanly first; the answer leaves before it does.
		if err := exec.Command("systemctl", "--no-block", verb).Run(); err != nil {
			return nil, err
		}
		return api.Reply{Status: http.StatusAccepted}, nil
	}
}
