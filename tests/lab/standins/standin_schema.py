"""Strict schema of the kubeadm v1beta4 configuration (and the kinds that may share its file).

The field lists follow kubeadm.k8s.io/v1beta4 (cmd/kubeadm/app/apis/kubeadm/v1beta4/types.go) and
kubelet.config.k8s.io/v1beta1, including fields kubeha does not use, so that a valid file is never
rejected. Unknown fields at any level fail like Kubernetes' strict decoding:
    strict decoding error: unknown field "etcd.external.foo"
Values of a wrong type fail too (e.g. a v1beta3-style extraArgs map where v1beta4 wants a list).
Nested KubeletConfiguration / KubeProxyConfiguration structs are only checked at the top level.
"""

from standin_common import StandinError, parse_duration

S, I, B, D, ANY = "str", "int", "bool", "duration", "any"
STRMAP, BOOLMAP = "strmap", "boolmap"


def L(item):
    return ("list", item)


ARG = {"name": S, "value": S}
ENV_VAR = {"name": S, "value": S, "valueFrom": ANY}
TAINT = {"key": S, "value": S, "effect": S, "timeAdded": S}
API_ENDPOINT = {"advertiseAddress": S, "bindPort": I}
PATCHES = {"directory": S}
TIMEOUTS = {k: D for k in ("controlPlaneComponentHealthCheck", "kubeletHealthCheck", "kubernetesAPICall",
                           "etcdAPICall", "tlsBootstrap", "discovery", "upgradeManifests")}
NODE_REGISTRATION = {
    "name": S, "criSocket": S, "taints": L(TAINT), "kubeletExtraArgs": L(ARG),
    "ignorePreflightErrors": L(S), "imagePullPolicy": S, "imagePullSerial": B,
}
BOOTSTRAP_TOKEN = {"token": S, "description": S, "ttl": D, "expires": S, "usages": L(S), "groups": L(S)}
HOST_PATH_MOUNT = {"name": S, "hostPath": S, "mountPath": S, "readOnly": B, "pathType": S}
CONTROL_PLANE_COMPONENT = {"extraArgs": L(ARG), "extraVolumes": L(HOST_PATH_MOUNT), "extraEnvs": L(ENV_VAR)}
TYPE_META = {"apiVersion": S, "kind": S}

INIT_CONFIGURATION = dict(TYPE_META, **{
    "bootstrapTokens": L(BOOTSTRAP_TOKEN), "dryRun": B, "nodeRegistration": NODE_REGISTRATION,
    "localAPIEndpoint": API_ENDPOINT, "certificateKey": S, "skipPhases": L(S), "patches": PATCHES,
    "timeouts": TIMEOUTS,
})

CLUSTER_CONFIGURATION = dict(TYPE_META, **{
    "etcd": {
        "local": {"imageRepository": S, "imageTag": S, "dataDir": S, "extraArgs": L(ARG),
                  "extraEnvs": L(ENV_VAR), "serverCertSANs": L(S), "peerCertSANs": L(S)},
        "external": {"endpoints": L(S), "httpEndpoints": L(S), "caFile": S, "certFile": S, "keyFile": S},
    },
    "networking": {"serviceSubnet": S, "podSubnet": S, "dnsDomain": S},
    "kubernetesVersion": S, "controlPlaneEndpoint": S,
    "apiServer": dict(CONTROL_PLANE_COMPONENT, certSANs=L(S)),
    "controllerManager": CONTROL_PLANE_COMPONENT, "scheduler": CONTROL_PLANE_COMPONENT,
    "dns": {"imageRepository": S, "imageTag": S, "disabled": B},
    "proxy": {"disabled": B},
    "certificatesDir": S, "imageRepository": S, "featureGates": BOOLMAP, "clusterName": S,
    "encryptionAlgorithm": S, "certificateValidityPeriod": D, "caCertificateValidityPeriod": D,
})

JOIN_CONFIGURATION = dict(TYPE_META, **{
    "dryRun": B, "nodeRegistration": NODE_REGISTRATION, "caCertPath": S,
    "discovery": {
        "bootstrapToken": {"token": S, "apiServerEndpoint": S, "caCertHashes": L(S),
                           "unsafeSkipCAVerification": B},
        "file": {"kubeConfigPath": S}, "tlsBootstrapToken": S,
    },
    "controlPlane": {"localAPIEndpoint": API_ENDPOINT, "certificateKey": S},
    "skipPhases": L(S), "patches": PATCHES, "timeouts": TIMEOUTS,
})

RESET_CONFIGURATION = dict(TYPE_META, **{
    "cleanupTmpDir": B, "certificatesDir": S, "criSocket": S, "dryRun": B, "force": B,
    "ignorePreflightErrors": L(S), "skipPhases": L(S), "unmountFlags": L(S), "timeouts": TIMEOUTS,
})

UPGRADE_CONFIGURATION = dict(TYPE_META, **{
    "apply": {"kubernetesVersion": S, "allowExperimentalUpgrades": B, "allowRCUpgrades": B,
              "certificateRenewal": B, "dryRun": B, "etcdUpgrade": B, "forceUpgrade": B,
              "ignorePreflightErrors": L(S), "patches": PATCHES, "printConfig": B, "skipPhases": L(S),
              "imagePullPolicy": S, "imagePullSerial": B},
    "node": {"certificateRenewal": B, "dryRun": B, "etcdUpgrade": B, "ignorePreflightErrors": L(S),
             "skipPhases": L(S), "patches": PATCHES, "imagePullPolicy": S, "imagePullSerial": B},
    "plan": {"kubernetesVersion": S, "allowExperimentalUpgrades": B, "allowRCUpgrades": B, "dryRun": B,
             "ignorePreflightErrors": L(S), "printConfig": B},
    "diff": {"kubernetesVersion": S, "contextLines": I},
    "timeouts": TIMEOUTS,
})

# KubeletConfiguration (kubelet.config.k8s.io/v1beta1): top-level fields; nested structs are not checked.
KUBELET_FIELDS = """
enableServer staticPodPath podLogsDir syncFrequency fileCheckFrequency httpCheckFrequency staticPodURL
staticPodURLHeader address port readOnlyPort tlsCertFile tlsPrivateKeyFile tlsCipherSuites tlsMinVersion
rotateCertificates serverTLSBootstrap authentication authorization registryPullQPS registryBurst
imagePullCredentialsVerificationPolicy preloadedImagesVerificationAllowlist eventRecordQPS eventBurst
enableDebuggingHandlers enableContentionProfiling healthzPort healthzBindAddress oomScoreAdj clusterDomain
clusterDNS streamingConnectionIdleTimeout nodeStatusUpdateFrequency nodeStatusReportFrequency
nodeLeaseDurationSeconds imageMinimumGCAge imageMaximumGCAge imageGCHighThresholdPercent
imageGCLowThresholdPercent volumeStatsAggPeriod kubeletCgroups systemCgroups cgroupRoot cgroupsPerQOS
cgroupDriver cpuManagerPolicy singleProcessOOMKill cpuManagerPolicyOptions cpuManagerReconcilePeriod
memoryManagerPolicy topologyManagerPolicy topologyManagerScope topologyManagerPolicyOptions qosReserved
runtimeRequestTimeout hairpinMode maxPods podCIDR podPidsLimit resolvConf runOnce cpuCFSQuota
cpuCFSQuotaPeriod nodeStatusMaxImages maxOpenFiles contentType kubeAPIQPS kubeAPIBurst serializeImagePulls
maxParallelImagePulls evictionHard evictionSoft evictionSoftGracePeriod evictionPressureTransitionPeriod
evictionMaxPodGracePeriod evictionMinimumReclaim mergeDefaultEvictionSettings podsPerCore
enableControllerAttachDetach protectKernelDefaults makeIPTablesUtilChains iptablesMasqueradeBit
iptablesDropBit featureGates failSwapOn memorySwap containerLogMaxSize containerLogMaxFiles
containerLogMaxWorkers containerLogMonitorInterval configMapAndSecretChangeDetectionStrategy systemReserved
kubeReserved reservedSystemCPUs showHiddenMetricsForVersion systemReservedCgroup kubeReservedCgroup
enforceNodeAllocatable allowedUnsafeSysctls volumePluginDir providerID kernelMemcgNotification logging
enableSystemLogHandler enableSystemLogQuery shutdownGracePeriod shutdownGracePeriodCriticalPods
shutdownGracePeriodByPodPriority crashLoopBackOff reservedMemory enableProfilingHandler
enableDebugFlagsHandler seccompDefault memoryThrottlingFactor registerWithTaints registerNode tracing
localStorageCapacityIsolation containerRuntimeEndpoint imageServiceEndpoint failCgroupV1 userNamespaces
""".split()
KUBELET_CONFIGURATION = dict(TYPE_META, **{f: ANY for f in KUBELET_FIELDS})
KUBELET_CONFIGURATION["cgroupDriver"] = S

KUBE_PROXY_FIELDS = """
bindAddress healthzBindAddress metricsBindAddress bindAddressHardFail enableProfiling
showHiddenMetricsForVersion mode ipvs iptables nftables winkernel detectLocalMode detectLocal clusterCIDR
nodePortAddresses oomScoreAdj conntrack configSyncPeriod portRange logging featureGates clientConnection
hostnameOverride windowsRunAsService linux
""".split()
KUBE_PROXY_CONFIGURATION = dict(TYPE_META, **{f: ANY for f in KUBE_PROXY_FIELDS})

KINDS = {
    ("kubeadm.k8s.io/v1beta4", "InitConfiguration"): INIT_CONFIGURATION,
    ("kubeadm.k8s.io/v1beta4", "ClusterConfiguration"): CLUSTER_CONFIGURATION,
    ("kubeadm.k8s.io/v1beta4", "JoinConfiguration"): JOIN_CONFIGURATION,
    ("kubeadm.k8s.io/v1beta4", "ResetConfiguration"): RESET_CONFIGURATION,
    ("kubeadm.k8s.io/v1beta4", "UpgradeConfiguration"): UPGRADE_CONFIGURATION,
    ("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration"): KUBELET_CONFIGURATION,
    ("kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration"): KUBE_PROXY_CONFIGURATION,
}


def check(value, schema, path, kind):
    """Raise StandinError on an unknown field or a value of the wrong type at path."""
    where = path or "(root)"
    if value is None:
        return  # null is the zero value in Go's decoder
    if schema == ANY:
        return
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise StandinError(f"{kind}: cannot unmarshal {_type(value)} into field \"{where}\" (an object)")
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            if k not in schema:
                raise StandinError(f"{kind}: strict decoding error: unknown field \"{sub}\"")
            check(v, schema[k], sub, kind)
    elif isinstance(schema, tuple):
        if not isinstance(value, list):
            raise StandinError(f"{kind}: cannot unmarshal {_type(value)} into field \"{where}\" (a list)")
        for i, item in enumerate(value):
            check(item, schema[1], f"{path}[{i}]", kind)
    elif schema == S:
        if not isinstance(value, str):
            raise StandinError(f"{kind}: cannot unmarshal {_type(value)} into field \"{where}\" of type string")
    elif schema == I:
        if not isinstance(value, int) or isinstance(value, bool):
            raise StandinError(f"{kind}: cannot unmarshal {_type(value)} into field \"{where}\" of type int32")
    elif schema == B:
        if not isinstance(value, bool):
            raise StandinError(f"{kind}: cannot unmarshal {_type(value)} into field \"{where}\" of type bool")
    elif schema == D:
        if not isinstance(value, str):
            raise StandinError(f"{kind}: field \"{where}\": a duration must be a string like \"24h\"")
        try:
            parse_duration(value)
        except ValueError as e:
            raise StandinError(f"{kind}: field \"{where}\": {e}")
    elif schema in (STRMAP, BOOLMAP):
        want = str if schema == STRMAP else bool
        if not isinstance(value, dict) or not all(isinstance(v, want) for v in value.values()):
            raise StandinError(f"{kind}: field \"{where}\" must map names to {want.__name__} values")
    else:
        raise AssertionError(schema)


def _type(v):
    return {dict: "object", list: "array", str: "string", bool: "bool", int: "number",
            float: "number"}.get(type(v), type(v).__name__)


def parse_documents(docs, source):
    """Map kind -> document after strict checks; unknown apiVersion/kind and duplicate kinds fail."""
    by_kind = {}
    for i, doc in enumerate(docs):
        api, kind = doc.get("apiVersion"), doc.get("kind")
        if not api or not kind:
            raise StandinError(f"{source}: document {i + 1}: apiVersion and kind are required")
        if (api, kind) not in KINDS:
            known = sorted({k for _, k in KINDS})
            if kind in known:
                raise StandinError(f"{source}: {kind} has apiVersion {api}; this kubeadm reads "
                                   f"{next(a for a, k in KINDS if k == kind)} (v1beta3 and older are not accepted)")
            raise StandinError(f"{source}: no kind \"{kind}\" is registered for version \"{api}\"")
        if kind in by_kind:
            raise StandinError(f"{source}: more than one {kind} document")
        check(doc, KINDS[(api, kind)], "", kind)
        by_kind[kind] = doc
    return by_kind
