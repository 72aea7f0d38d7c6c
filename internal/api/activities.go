package api

// Activity type names. Workflows schedule activities by these names and the
// worker registers each activity under its name, so a Go method can be
// renamed or moved without breaking the histories of runs in flight. Each
// name equals the Go method name it was registered under before names were
// explicit: recorded histories carry these strings.
const (
	// Kubernetes (activities.Kube).
	ActivityPreflight              = "Preflight"
	ActivitySaveObject             = "SaveObject"
	ActivityDeleteObject           = "DeleteObject"
	ActivityCreateObject           = "CreateObject"
	ActivityWaitJobComplete        = "WaitJobComplete"
	ActivityWaitEtcdClusterRunning = "WaitEtcdClusterRunning"
	ActivitySnapshotPods           = "SnapshotPods"
	ActivityDeletePods             = "DeletePods"
	ActivityWaitPodsReplaced       = "WaitPodsReplaced"
	ActivityReadEtcdBackupAge      = "ReadEtcdBackupAge"

	// CSM API and SSH (activities.CSM).
	ActivityCheckAccess             = "CheckAccess"
	ActivityCheckCRUSSessions       = "CheckCRUSSessions"
	ActivityConfirmCRUSSessions     = "ConfirmCRUSSessions"
	ActivityDiscoverOrcaTargets     = "DiscoverOrcaTargets"
	ActivityRestartOrca             = "RestartOrca"
	ActivityVerifySubscriptions     = "VerifySubscriptions"
	ActivityStartFASLoader          = "StartFASLoader"
	ActivityWaitFASLoader           = "WaitFASLoader"
	ActivityFindCPSNodes            = "FindCPSNodes"
	ActivityStartBOSSession         = "StartBOSSession"
	ActivityWaitNodesState          = "WaitNodesState"
	ActivityRestoreSessionTemplates = "RestoreSessionTemplates"
	ActivityCheckSessionTemplates   = "CheckSessionTemplates"
	ActivityCompareBootParameters   = "CompareBootParameters"
	ActivityRestoreBootParameters   = "RestoreBootParameters"
	ActivityDetectRelease           = "DetectRelease"
	ActivityCheckHMNFDReady         = "CheckHMNFDReady"
	// Since change orca-nid-ranges: discovery and the subscription check
	// without one xname per node in history.
	ActivityDiscoverOrcaNodes          = "DiscoverOrcaNodes"
	ActivityVerifyComputeSubscriptions = "VerifyComputeSubscriptions"

	// Data checks (procedures/datacheck).
	ActivityCheckBootParameters = "CheckBootParameters"
	ActivityCheckFASImages      = "CheckFASImages"
)
