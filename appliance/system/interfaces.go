package system

import (
	"net/http"

	"toride/appliance/api"
)

// InterfaceStatus is one network interface of the appliance's namespace, as the kernel has it now.
type InterfaceStatus struct {
	Name string `json:"name"`
	// Up is the administrative state; Running the carrier (operational state up).
	Up        bool     `json:"up"`
	Running   bool     `json:"running"`
	MTU       int      `json:"mtu"`
	MAC       string   `json:"mac,omitempty"`
	Addresses []string `json:"addresses"`
	RxBytes   uint64   `json:"rx_bytes"`
	TxBytes   uint64   `json:"tx_bytes"`
	RxPackets uint64   `json:"rx_packets"`
	TxPackets uint64   `json:"tx_packets"`
	RxErrors  uint64   `json:"rx_errors"`
	TxErrors  uint64   `json:"tx_errors"`
	RxDropped uint64   `json:"rx_dropped"`
	TxDropped uint64   `json:"tx_dropped"`
}

// Interfaces is the answer of GET /api/v1/system/interfaces, by name.
type Interfaces struct {
	Interfaces []InterfaceStatus `json:"interfaces"`
}

// InterfacesAPI serves GET /api/v1/system/interfaces from List (ListInterfaces in torided).
type InterfacesAPI struct {
	List func() ([]InterfaceStatus, error)
}

// Register routes GET /api/v1/system/interfaces on s.
func (a InterfacesAPI) Register(s *api.Server) {
	s.HandleFunc("GET /api/v1/system/interfaces", func(*http.Request) (any, error) {
		list, err := a.List()
		if err != nil {
			return nil, err
		}
		if list == nil {
			list = []InterfaceStatus{}
		}
		return Interfaces{Interfaces: list}, nil
	})
}
