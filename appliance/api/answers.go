package api

import (
	"time"

	"toride/appliance/store"
)

// The types below are the answers of the configuration endpoints: the server encodes them and the client
// (appliance/console) decodes them, so the two cannot drift apart.

// Changed is the answer of every request that edits the candidate: whether it now differs from the running
// configuration.
type Changed struct {
	Changed bool `json:"changed"`
}

// ConfigTree is GET /api/v1/config?format=tree (and format=marked, where each line starts with its mark).
type ConfigTree struct {
	Tree string `json:"tree"`
}

// ConfigCommands is GET /api/v1/config?format=commands.
type ConfigCommands struct {
	Commands []string `json:"commands"`
}

// CommitEntry is one entry of the commit archive; Index counts back from the running configuration (0).
type CommitEntry struct {
	Index int `json:"index"`
	store.Commit
}

// Committed is the answer of a commit or a rollback. Committed is false (with Message) when there was nothing
// to commit; ConfirmBy is set while a commit-confirm waits.
type Committed struct {
	Committed bool         `json:"committed"`
	Commit    *CommitEntry `json:"commit,omitempty"`
	ConfirmBy *time.Time   `json:"confirm_by,omitempty"`
	Message   string       `json:"message,omitempty"`
}

// PendingConfirm is a commit-confirm that waits for its confirmation.
type PendingConfirm struct {
	Revision int       `json:"revision"`
	Deadline time.Time `json:"deadline"`
}

// Commits is GET /api/v1/config/commits: the archive, newest first.
type Commits struct {
	Commits        []CommitEntry   `json:"commits"`
	PendingConfirm *PendingConfirm `json:"pending_confirm,omitempty"`
}

// Confirmed is POST /api/v1/config/confirm.
type Confirmed struct {
	Confirmed bool `json:"confirmed"`
}

// Compare is GET /api/v1/config/compare: "- set …" and "+ set …" lines.
type Compare struct {
	Diff []string `json:"diff"`
}

// Description is GET /api/v1/config/describe: one node of the schema, for help and completion.
type Description struct {
	Name string `json:"name"`
	// Kind is container, tag, leaf, multi or flag.
	Kind    string   `json:"kind"`
	Help    string   `json:"help"`
	Default string   `json:"default,omitempty"`
	Enum    []string `json:"enum,omitempty"`
	// Children are a container's child names; ChildNodes the same with their kind and help.
	Children   []string    `json:"children,omitempty"`
	ChildNodes []ChildNode `json:"child_nodes,omitempty"`
	// Values are a tag node's existing keys, or a leaf's current values (never a secret's).
	Values []string `json:"values,omitempty"`
	Range  [2]int64 `json:"range,omitzero"`
	// Format is how a value (or, for a tag node, a key) is written, e.g. <x.x.x.x/n>.
	Format string `json:"format,omitempty"`
}

// ChildNode is one child of a container, as Description lists it.
type ChildNode struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	Help string `json:"help"`
}
