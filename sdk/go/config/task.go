package config

import (
	"math"
	"strings"
	"time"
)

// RequiredParentStatus is how a parent must have ended for its child to run.
type RequiredParentStatus string

const (
	// RequiredParentStatusUnknown is kept for configs of the earlier Gofer; it is treated as Any.
	RequiredParentStatusUnknown RequiredParentStatus = "Unknown"
	// RequiredParentStatusAny: the parent ended in any final state.
	RequiredParentStatusAny RequiredParentStatus = "Any"
	// RequiredParentStatusSuccess: the parent ended successful.
	RequiredParentStatusSuccess RequiredParentStatus = "Success"
	// RequiredParentStatusFailure: the parent ended failed.
	RequiredParentStatusFailure RequiredParentStatus = "Failure"
)

// RegistryAuth holds credentials for pulling a task's image from a private registry.
type RegistryAuth struct {
	User string `json:"user"`
	Pass string `json:"pass"`
}

// Task is one unit of work: a container image plus how to run it.
type Task struct {
	ID                    string                          `json:"id"`
	Description           *string                         `json:"description"`
	Image                 string                          `json:"image"`
	RegistryAuth          *RegistryAuth                   `json:"registry_auth"`
	DependsOn             map[string]RequiredParentStatus `json:"depends_on"`
	Variables             map[string]string               `json:"variables"`
	Entrypoint            []string                        `json:"entrypoint"`
	Command               []string                        `json:"command"`
	InjectAPIToken        bool                            `json:"inject_api_token"`
	AlwaysPullNewestImage bool                            `json:"always_pull_newest_image"`
	TimeoutSeconds        *uint64                         `json:"timeout_seconds,omitempty"`
	Retries               uint32                          `json:"retries,omitempty"`
	CPUMillicores         *uint32                         `json:"cpu_millicores,omitempty"`
	MemoryBytes           *uint64                         `json:"memory_bytes,omitempty"`
	WorkingDir            *string                         `json:"working_dir,omitempty"`
	User                  *string                         `json:"user,omitempty"`
	Volumes               []VolumeMount                   `json:"volumes,omitempty"`
}

// VolumeMount mounts a volume the server's operator configured (scheduler.volumes.<name>) at Path.
type VolumeMount struct {
	Name     string `json:"name"`
	Path     string `json:"path"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// MiB and GiB are byte counts for Memory: Memory(512 * config.MiB).
const (
	MiB uint64 = 1024 * 1024
	GiB uint64 = 1024 * MiB
)

// TaskWrapper is the builder NewTask returns (the earlier SDK's name for it).
type TaskWrapper struct {
	Task
}

// NewTask starts a task from an id (unique within the pipeline) and an image. The image is pulled only when the
// engine does not have it; ask for AlwaysPullNewestImage(true) to pull every time.
func NewTask(id, image string) *TaskWrapper {
	return &TaskWrapper{Task{
		ID:        id,
		Image:     image,
		DependsOn: map[string]RequiredParentStatus{},
		Variables: map[string]string{},
	}}
}

// Description says what the task does.
func (t *TaskWrapper) Description(description string) *TaskWrapper {
	t.Task.Description = &description
	return t
}

// RegistryAuth pulls the image with these credentials; the password may be a secret reference such as
// PipelineSecret("REGISTRY_PASSWORD").
func (t *TaskWrapper) RegistryAuth(user, pass string) *TaskWrapper {
	t.Task.RegistryAuth = &RegistryAuth{User: user, Pass: pass}
	return t
}

// DependsOn runs this task only after taskID ended the way status asks for; otherwise this task is skipped.
func (t *TaskWrapper) DependsOn(taskID string, status RequiredParentStatus) *TaskWrapper {
	t.Task.DependsOn[taskID] = status
	return t
}

// DependsOnMany adds several dependencies at once.
func (t *TaskWrapper) DependsOnMany(dependsOn map[string]RequiredParentStatus) *TaskWrapper {
	for taskID, status := range dependsOn {
		t.Task.DependsOn[taskID] = status
	}
	return t
}

// Variables adds environment variables; later calls add to earlier ones. Keys are kept as given (the earlier Go
// SDK did not upper-case them; the Rust SDK does). Values may be references such as PipelineSecret("KEY").
func (t *TaskWrapper) Variables(variables map[string]string) *TaskWrapper {
	for key, value := range variables {
		t.Task.Variables[key] = value
	}
	return t
}

// Entrypoint replaces the image's entrypoint.
func (t *TaskWrapper) Entrypoint(entrypoint ...string) *TaskWrapper {
	t.Task.Entrypoint = append([]string{}, entrypoint...)
	return t
}

// Command replaces the image's command (its arguments, after the entrypoint).
func (t *TaskWrapper) Command(command ...string) *TaskWrapper {
	t.Task.Command = append([]string{}, command...)
	return t
}

// Script runs a shell script: the command becomes `sh -c <script>` (every image with a shell has sh; not every
// image has bash, which the earlier SDK used).
func (t *TaskWrapper) Script(script string) *TaskWrapper {
	t.Task.Command = []string{"sh", "-c", strings.TrimSpace(script)}
	return t
}

// InjectAPIToken hands the task an API token scoped to its run as GOFER_TOKEN.
func (t *TaskWrapper) InjectAPIToken(inject bool) *TaskWrapper {
	t.Task.InjectAPIToken = inject
	return t
}

// AlwaysPullNewestImage pulls the image before every run, not only when the engine lacks it.
func (t *TaskWrapper) AlwaysPullNewestImage(pull bool) *TaskWrapper {
	t.Task.AlwaysPullNewestImage = pull
	return t
}

// Timeout is the longest one attempt may take (rounded up to whole seconds); past it the container is stopped and
// the attempt fails with reason `timeout`. The server may cap it.
func (t *TaskWrapper) Timeout(timeout time.Duration) *TaskWrapper {
	seconds := wholeSeconds(timeout)
	t.Task.TimeoutSeconds = &seconds
	return t
}

// Retries retries a failed attempt up to retries times (at most 10). Cancelled attempts are not retried.
func (t *TaskWrapper) Retries(retries uint32) *TaskWrapper {
	t.Task.Retries = retries
	return t
}

// CPU limits the CPU the container may use, in cores: CPU(0.5) is half a core. Kept to a thousandth of a core; at
// least 0.01.
func (t *TaskWrapper) CPU(cores float64) *TaskWrapper {
	millis := math.Round(cores * 1000)
	var kept uint32
	switch {
	case math.IsNaN(millis) || millis <= 0:
		kept = 0
	case millis >= math.MaxUint32:
		kept = math.MaxUint32
	default:
		kept = uint32(millis)
	}
	t.Task.CPUMillicores = &kept
	return t
}

// Memory limits the memory the container may use, in bytes: Memory(512 * config.MiB). A task that needs more is
// killed and fails with reason out_of_memory. At least 6 MiB.
func (t *TaskWrapper) Memory(bytes uint64) *TaskWrapper {
	t.Task.MemoryBytes = &bytes
	return t
}

// WorkingDir starts the command in path (absolute) instead of the image's working directory.
func (t *TaskWrapper) WorkingDir(path string) *TaskWrapper {
	t.Task.WorkingDir = &path
	return t
}

// User runs the command as user (name, uid, name:group or uid:gid) instead of the image's user.
func (t *TaskWrapper) User(user string) *TaskWrapper {
	t.Task.User = &user
	return t
}

// Volume mounts the volume the server's operator configured as scheduler.volumes.<name> at path.
func (t *TaskWrapper) Volume(name, path string) *TaskWrapper {
	t.Task.Volumes = append(t.Task.Volumes, VolumeMount{Name: name, Path: path})
	return t
}

// ReadOnlyVolume mounts a configured volume read-only at path; see Volume.
func (t *TaskWrapper) ReadOnlyVolume(name, path string) *TaskWrapper {
	t.Task.Volumes = append(t.Task.Volumes, VolumeMount{Name: name, Path: path, ReadOnly: true})
	return t
}

// PipelineSecret reads a pipeline secret into a variable: Variables(map[string]string{"PASSWORD":
// PipelineSecret("db_password")}).
func PipelineSecret(key string) string { return "pipeline_secret{{" + key + "}}" }

// GlobalSecret reads a global secret into a variable, if the pipeline's namespace may use it.
func GlobalSecret(key string) string { return "global_secret{{" + key + "}}" }

// PipelineObject reads a pipeline object into a variable.
func PipelineObject(key string) string { return "pipeline_object{{" + key + "}}" }

// RunObject reads an object of the current run into a variable; a parent task can leave one for its children.
func RunObject(key string) string { return "run_object{{" + key + "}}" }
