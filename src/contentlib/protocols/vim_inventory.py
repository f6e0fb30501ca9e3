"""The inventory the vim25 SOAP API shows: a small, fixed graph of managed objects and their properties.

    ServiceInstance                      content (ServiceContent), serverClock, capability
    SessionManager                       currentSession (the caller's), sessionList (the caller's user's), locales
    PropertyCollector, ViewManager       filter / viewList (always empty: filters are not served, views are stateless)
    SearchIndex                          finds entities by inventory path or name; no VM or host is ever found
    Folder group-d1 "Datacenters"        the rootFolder
      Datacenter datacenter-1 "Datacenter"
        Folder group-v1 "vm", group-h1 "host", group-n1 "network"   empty
        Folder group-s1 "datastore"
          Datastore datastore-1          one per storage backing of this server (services/datastores.py), read-only
    ContainerView view:...               made by ViewManager.CreateContainerView

There are no virtual machines, hosts or networks. Every property a client may name is known by its type (`_MANAGED`,
with vim25's inheritance: a Datastore is a ManagedEntity), so a bad path is an InvalidProperty fault; the managed
types this server has no objects of (`UNSERVED`) are known by name only: a spec naming them matches nothing.

A container view is stateless: its managed-object id holds its definition (container, recursion, types), so any
replica can answer for it; DestroyView has nothing to free.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from contentlib.protocols.vim_values import (
    Array,
    Data,
    Enum,
    MoRef,
    Value,
    boolean,
    data,
    date_time,
    invalid_property,
    long,
    refs,
    string,
    strings,
)
from contentlib.services.auth import Auth, SessionView
from contentlib.services.datastores import Datastore, Datastores


def _words(text: str) -> list[str]:
    return text.split()


VERSION, BUILD, API_VERSION = "8.0.2", "22385739", "8.0.2.0"
# What /sdk/vimServiceVersions.xml lists below API_VERSION (vCenter 8.0.2's list): clients pick the newest they know.
PRIOR_VERSIONS = _words(
    "8.0.1.0 8.0.0.2 8.0.0.1 8.0.0.0 7.0.3.2 7.0.3.1 7.0.3.0 7.0.2.1 7.0.2.0 7.0.1.1 7.0.1.0 7.0.0.2 7.0.0.1 "
    "7.0.0.0 6.9.1 6.8.7 6.7.3 6.7.2 6.7.1 6.7 6.6 6.5 6.0 5.5 5.1 5.0 4.1 4.0"
)
LOCALE = "en"

# The managed types there are objects of: (base type, {property: vim25 type}). A property whose type is a key of
# DATA_FIELDS may be named with a path into it (`summary.freeSpace`); `[]` marks an array.
_MANAGED: dict[str, tuple[str | None, dict[str, str]]] = {
    "ManagedObject": (None, {}),
    "ExtensibleManagedObject": ("ManagedObject", {"value": "CustomFieldValue[]", "availableField": "CustomFieldDef[]"}),
    "ManagedEntity": (
        "ExtensibleManagedObject",
        {
            "parent": "ManagedObjectReference",
            "customValue": "CustomFieldValue[]",
            "overallStatus": "ManagedEntityStatus",
            "configStatus": "ManagedEntityStatus",
            "configIssue": "Event[]",
            "effectiveRole": "int[]",
            "permission": "Permission[]",
            "name": "string",
            "disabledMethod": "string[]",
            "recentTask": "ManagedObjectReference[]",
            "declaredAlarmState": "AlarmState[]",
            "triggeredAlarmState": "AlarmState[]",
            "alarmActionsEnabled": "boolean",
            "tag": "Tag[]",
        },
    ),
    "Folder": (
        "ManagedEntity",
        {"childType": "string[]", "childEntity": "ManagedObjectReference[]", "namespace": "string"},
    ),
    "Datacenter": (
        "ManagedEntity",
        {
            "vmFolder": "ManagedObjectReference",
            "hostFolder": "ManagedObjectReference",
            "datastoreFolder": "ManagedObjectReference",
            "networkFolder": "ManagedObjectReference",
            "datastore": "ManagedObjectReference[]",
            "network": "ManagedObjectReference[]",
            "configuration": "DatacenterConfigInfo",
        },
    ),
    "Datastore": (
        "ManagedEntity",
        {
            "info": "DatastoreInfo",
            "summary": "DatastoreSummary",
            "host": "DatastoreHostMount[]",
            "vm": "ManagedObjectReference[]",
            "browser": "ManagedObjectReference",
            "capability": "DatastoreCapability",
            "iormConfiguration": "StorageIORMInfo",
        },
    ),
    "ServiceInstance": (
        "ManagedObject",
        {"serverClock": "dateTime", "capability": "Capability", "content": "ServiceContent"},
    ),
    "SessionManager": (
        "ManagedObject",
        {
            "sessionList": "UserSession[]",
            "currentSession": "UserSession",
            "message": "string",
            "messageLocaleList": "string[]",
            "supportedLocaleList": "string[]",
            "defaultLocale": "string",
        },
    ),
    "PropertyCollector": ("ManagedObject", {"filter": "ManagedObjectReference[]"}),
    "SearchIndex": ("ManagedObject", {}),
    "ViewManager": ("ManagedObject", {"viewList": "ManagedObjectReference[]"}),
    "View": ("ManagedObject", {}),
    "ManagedObjectView": ("View", {"view": "ManagedObjectReference[]"}),
    "ContainerView": (
        "ManagedObjectView",
        {"container": "ManagedObjectReference", "type": "string[]", "recursive": "boolean"},
    ),
}
_LEAF = "string"


def _leaves(names: str) -> dict[str, str]:
    return dict.fromkeys(names.split(), _LEAF)


DATA_FIELDS: dict[str, dict[str, str]] = {
    "AboutInfo": _leaves(
        "name fullName vendor version patchLevel build localeVersion localeBuild osType productLineId apiType "
        "apiVersion instanceUuid licenseProductName licenseProductVersion"
    ),
    "ServiceContent": {"about": "AboutInfo"}
    | _leaves(
        "rootFolder propertyCollector viewManager setting userDirectory sessionManager authorizationManager "
        "serviceManager perfManager scheduledTaskManager alarmManager eventManager taskManager extensionManager "
        "customizationSpecManager guestCustomizationManager customFieldsManager accountManager diagnosticManager "
        "licenseManager searchIndex fileManager datastoreNamespaceManager virtualDiskManager virtualizationManager "
        "snmpSystem vmProvisioningChecker vmCompatibilityChecker ovfManager ipPoolManager dvSwitchManager "
        "hostProfileManager clusterProfileManager complianceManager localizationManager storageResourceManager "
        "guestOperationsManager overheadMemoryManager certificateManager ioFilterManager vStorageObjectManager "
        "hostSpecManager cryptoManager healthUpdateManager failoverClusterConfigurator failoverClusterManager "
        "tenantManager siteInfoManager storageQueryManager"
    ),
    "Capability": _leaves(
        "provisioningSupported multiHostSupported userShellAccessSupported supportedEVCMode supportedEVCGraphicsMode "
        "networkBackupAndRestoreSupported ftDrsWithoutEvcSupported hciWorkflowSupported computePolicyVersion "
        "clusterPlacementSupported lifecycleManagementSupported hostSeedingSupported scalableSharesSupported "
        "hadcsSupported configMgmtSupported"
    ),
    "UserSession": _leaves(
        "key userName fullName loginTime lastActiveTime locale messageLocale extensionSession ipAddress userAgent "
        "callCount"
    ),
    "DatastoreSummary": _leaves(
        "datastore name url capacity freeSpace uncommitted accessible multipleHostAccess type maintenanceMode"
    ),
    "DatastoreInfo": _leaves(
        "name url freeSpace maxFileSize maxVirtualDiskCapacity maxMemoryFileSize timestamp containerId aliasOf"
    ),
    "DatastoreCapability": _leaves(
        "directoryHierarchySupported rawDiskMappingsSupported perFileThinProvisioningSupported storageIORMSupported "
        "nativeSnapshotSupported topLevelDirectoryCreateSupported seSparseSupported vmfsSparseSupported "
        "vsanSparseSupported upitSupported vmdkExpandSupported clusteredVmdkSupported"
    ),
}
# vim25's other managed object types: known by name, no objects.
UNSERVED = frozenset(
    _words(
        """Alarm AlarmManager AuthorizationManager CertificateManager ClusterComputeResource ClusterEVCManager
    ClusterProfile ClusterProfileManager ComputeResource CryptoManager CryptoManagerHost CryptoManagerHostKMS
    CryptoManagerKmip CustomFieldsManager CustomizationSpecManager DatastoreNamespaceManager DiagnosticManager
    DirectPathProfileManager DistributedVirtualPortgroup DistributedVirtualSwitch DistributedVirtualSwitchManager
    EnvironmentBrowser EventHistoryCollector EventManager ExtensionManager FailoverClusterConfigurator
    FailoverClusterManager FileManager GuestAliasManager GuestAuthManager GuestFileManager GuestOperationsManager
    GuestProcessManager GuestWindowsRegistryManager HealthUpdateManager HistoryCollector HostAccessManager
    HostActiveDirectoryAuthentication HostAssignableHardwareManager HostAuthenticationManager HostAuthenticationStore
    HostAutoStartManager HostBootDeviceSystem HostCacheConfigurationManager HostCertificateManager
    HostCpuSchedulerSystem HostDatastoreBrowser HostDatastoreSystem HostDateTimeSystem HostDiagnosticSystem
    HostDirectoryStore HostEsxAgentHostManager HostFirewallSystem HostFirmwareSystem HostGraphicsManager
    HostHealthStatusSystem HostImageConfigManager HostKernelModuleSystem HostLocalAccountManager
    HostLocalAuthentication HostMemorySystem HostNetworkSystem HostNvdimmSystem HostPatchManager
    HostPciPassthruSystem HostPowerSystem HostProfile HostProfileManager HostServiceSystem HostSnmpSystem
    HostSpecificationManager HostStorageSystem HostSystem HostVFlashManager HostVMotionSystem
    HostVStorageObjectManager HostVirtualNicManager HostVsanInternalSystem HostVsanSystem HttpNfcLease InventoryView
    IoFilterManager IpPoolManager IscsiManager LicenseAssignmentManager LicenseManager ListView LocalizationManager
    MessageBusProxy Network OpaqueNetwork OptionManager OverheadMemoryManager OvfManager PerformanceManager Profile
    ProfileComplianceManager ProfileManager PropertyFilter ResourcePlanningManager ResourcePool ScheduledTask
    ScheduledTaskManager ServiceManager SimpleCommand SiteInfoManager StoragePod StorageQueryManager
    StorageResourceManager Task TaskHistoryCollector TaskManager TenantTenantManager UserDirectory
    VStorageObjectManagerBase VcenterVStorageObjectManager VirtualApp VirtualDiskManager VirtualMachine
    VirtualMachineCompatibilityChecker VirtualMachineGuestCustomizationManager VirtualMachineProvisioningChecker
    VirtualMachineSnapshot VirtualizationManager VmwareDistributedVirtualSwitch VsanUpgradeSystem"""
    )
)


def is_known(type_: str) -> bool:
    return type_ in _MANAGED or type_ in UNSERVED


def is_a(type_: str, base: str) -> bool:
    """Whether objects of `type_` are `base`s (vim25's inheritance among the types there are objects of)."""
    t: str | None = type_
    while t is not None:
        if t == base:
            return True
        t = _MANAGED[t][0] if t in _MANAGED else None
    return False


def properties(type_: str) -> dict[str, str]:
    """Every property of a served type, the inherited ones first."""
    base, own = _MANAGED[type_]
    return (properties(base) if base else {}) | own


def check_path(type_: str, path: str) -> None:
    """InvalidProperty unless `path` names a property of `type_` (and fields of its data objects, with dots). The
    types there are no objects of are not checked: nothing of them is ever collected."""
    if type_ not in _MANAGED:
        return
    first, *rest = path.split(".")
    kind = properties(type_).get(first)
    if kind is None:
        raise invalid_property(path, f"The property '{path}' is not a property of {type_}.")
    for field in rest:
        fields = DATA_FIELDS.get(kind)
        if fields is None or field not in fields:
            raise invalid_property(path, f"The property path '{path}' of {type_} names no field '{field}'.")
        kind = fields[field]


@dataclass(frozen=True)
class Caller:
    """Who asks: their session (None before login), from where and with what."""

    session: SessionView | None
    address: str
    user_agent: str


class Services(Protocol):
    """What the inventory reads from the server (a subset of protocols.host.Host)."""

    @property
    def auth(self) -> Auth: ...

    @property
    def datastores(self) -> Datastores: ...

    @property
    def server_guid(self) -> str: ...


@dataclass(frozen=True)
class _Entity:
    ref: MoRef
    name: str
    parent: MoRef | None
    child_type: tuple[str, ...] = ()


SERVICE_INSTANCE = MoRef("ServiceInstance", "ServiceInstance")
SESSION_MANAGER = MoRef("SessionManager", "SessionManager")
PROPERTY_COLLECTOR = MoRef("PropertyCollector", "propertyCollector")
VIEW_MANAGER = MoRef("ViewManager", "ViewManager")
SEARCH_INDEX = MoRef("SearchIndex", "SearchIndex")
ROOT_FOLDER = MoRef("Folder", "group-d1")
DATACENTER = MoRef("Datacenter", "datacenter-1")
FOLDERS = {  # Datacenter property → (folder, name, child types)
    "vmFolder": (MoRef("Folder", "group-v1"), "vm", ("Folder", "VirtualMachine", "VirtualApp")),
    "hostFolder": (MoRef("Folder", "group-h1"), "host", ("Folder", "ComputeResource")),
    "datastoreFolder": (MoRef("Folder", "group-s1"), "datastore", ("Folder", "Datastore", "StoragePod")),
    "networkFolder": (MoRef("Folder", "group-n1"), "network", ("Folder", "Network", "DistributedVirtualSwitch")),
}
_VIEW = "view:"  # a container view's id: view:<container id>:<1 recursive | 0>:<type,type,...>


@dataclass(frozen=True)
class ContainerView:
    container: MoRef
    recursive: bool
    types: tuple[str, ...]

    @property
    def ref(self) -> MoRef:
        return MoRef("ContainerView", f"{_VIEW}{self.container.value}:{int(self.recursive)}:{','.join(self.types)}")


class Inventory:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.datastores = {MoRef("Datastore", d.id): d for d in services.datastores.all()}
        store_folder = FOLDERS["datastoreFolder"][0]
        entities = [
            _Entity(ROOT_FOLDER, "Datacenters", None, ("Folder", "Datacenter")),
            _Entity(DATACENTER, "Datacenter", ROOT_FOLDER),
            *(_Entity(ref, name, DATACENTER, types) for ref, name, types in FOLDERS.values()),
            *(_Entity(ref, d.name, store_folder) for ref, d in self.datastores.items()),
        ]
        self.entities = {e.ref: e for e in entities}
        self.children: dict[MoRef, list[MoRef]] = {e.ref: [] for e in entities}
        for e in entities:
            if e.parent is not None:
                self.children[e.parent].append(e.ref)
        self.singletons = frozenset({SERVICE_INSTANCE, SESSION_MANAGER, PROPERTY_COLLECTOR, VIEW_MANAGER, SEARCH_INDEX})

    # -- objects -------------------------------------------------------------------------------------------------
    def exists(self, ref: MoRef) -> bool:
        return ref in self.entities or ref in self.singletons or self.view(ref) is not None

    def resolve(self, ref: MoRef) -> MoRef | None:
        """The object a reference names: exactly, or by its id under one of its base types (`ManagedEntity`
        datastore-1 is the Datastore; pyvmomi and ovftool type references by a property's declared type)."""
        if self.exists(ref):
            return ref
        if ref.type not in _MANAGED:
            return None
        if is_a("ContainerView", ref.type) and self.view(MoRef("ContainerView", ref.value)) is not None:
            return MoRef("ContainerView", ref.value)
        objects = [*self.entities, *self.singletons]
        return next((o for o in objects if o.value == ref.value and is_a(o.type, ref.type)), None)

    def view(self, ref: MoRef) -> ContainerView | None:
        """The container view a managed-object id stands for, if it is one of ours."""
        if ref.type != "ContainerView" or not ref.value.startswith(_VIEW):
            return None
        parts = ref.value[len(_VIEW) :].split(":")
        if len(parts) != 3 or parts[1] not in ("0", "1"):
            return None
        container = next((e for e in self.entities if e.value == parts[0]), None)
        types = tuple(t for t in parts[2].split(",") if t)
        if container is None or not all(is_known(t) for t in types):
            return None
        return ContainerView(container, parts[1] == "1", types)

    def find_child(self, parent: MoRef, name: str) -> MoRef | None:
        """SearchIndex.FindChild: the child entity of a folder or datacenter with that name."""
        return next((c for c in self.children.get(parent, []) if self.entities[c].name == name), None)

    def find_path(self, path: str) -> MoRef | None:
        """SearchIndex.FindByInventoryPath: `Datacenter/datastore/NAME` from the root folder; a `/` in a name is
        written `%2f` (and `%` as `%25`), as vCenter writes inventory paths."""
        found: MoRef | None = ROOT_FOLDER
        for part in path.split("/"):
            if part and found is not None:
                name = part.replace("%2f", "/").replace("%2F", "/").replace("%5c", "\\").replace("%25", "%")
                found = self.find_child(found, name)
        return found

    def contents(self, view: ContainerView) -> list[MoRef]:
        """The entities in a view: the container's children (all descendants when recursive) of the view's types."""
        found: list[MoRef] = []
        todo = list(self.children[view.container])
        while todo:
            ref = todo.pop(0)
            found.append(ref)
            if view.recursive:
                todo += self.children[ref]
        return [r for r in found if not view.types or any(is_a(r.type, t) for t in view.types)]

    # -- property values -----------------------------------------------------------------------------------------
    def service_content(self) -> Data:
        return data(
            "ServiceContent",
            rootFolder=ROOT_FOLDER,
            propertyCollector=PROPERTY_COLLECTOR,
            viewManager=VIEW_MANAGER,
            about=self.about(),
            sessionManager=SESSION_MANAGER,
            searchIndex=SEARCH_INDEX,
        )

    def about(self) -> Data:
        return data(
            "AboutInfo",
            name=string("VMware vCenter Server"),
            fullName=string(f"VMware vCenter Server {VERSION} build-{BUILD}"),
            vendor=string("VMware, Inc."),
            version=string(VERSION),
            build=string(BUILD),
            localeVersion=string("INTL"),
            localeBuild=string("000"),
            osType=string("linux-x64"),
            productLineId=string("vpx"),
            apiType=string("VirtualCenter"),
            apiVersion=string(API_VERSION),
            instanceUuid=string(self.services.server_guid),
            licenseProductName=string("VMware VirtualCenter Server"),
            licenseProductVersion=string("8.0"),
        )

    async def values(self, ref: MoRef, names: Collection[str] | None, caller: Caller) -> dict[str, Value]:
        """The set properties among `names` (None: all) of an existing object; unset ones are left out."""
        wanted = list(properties(ref.type)) if names is None else list(dict.fromkeys(names))
        values: dict[str, Value] = {}
        for name in wanted:
            value = await self._value(ref, name, caller)
            if value is not None:
                values[name] = value
        return values

    async def _value(self, ref: MoRef, name: str, caller: Caller) -> Value | None:
        if ref in self.entities:
            return await self._entity_value(self.entities[ref], name)
        if ref == SESSION_MANAGER:
            return await self._session_value(name, caller)
        if ref == SERVICE_INSTANCE:
            return self._service_instance_value(name)
        if ref in (PROPERTY_COLLECTOR, VIEW_MANAGER):
            return refs([]) if name in ("filter", "viewList") else None
        view = self.view(ref)
        if view is None:
            return None
        if name == "view":
            return refs(self.contents(view))
        values: dict[str, Value] = {
            "container": view.container,
            "type": strings(view.types),
            "recursive": boolean(view.recursive),
        }
        return values.get(name)

    def _service_instance_value(self, name: str) -> Value | None:
        if name == "content":
            return self.service_content()
        if name == "serverClock":
            return date_time(time.time())
        if name == "capability":
            return data(
                "Capability",
                provisioningSupported=boolean(False),
                multiHostSupported=boolean(False),
                userShellAccessSupported=boolean(False),
            )
        return None

    async def _entity_value(self, e: _Entity, name: str) -> Value | None:
        common: dict[str, Value | None] = {
            "name": string(e.name),
            "parent": e.parent,
            "overallStatus": Enum("ManagedEntityStatus", "green"),
            "configStatus": Enum("ManagedEntityStatus", "green"),
            "recentTask": refs([]),
            "disabledMethod": strings([]),
        }
        if name in common:
            return common[name]
        if e.ref.type == "Folder":
            return {
                "childType": strings(e.child_type),
                "childEntity": refs(self.children[e.ref]),
            }.get(name)
        if e.ref.type == "Datacenter":
            if name in FOLDERS:
                return FOLDERS[name][0]
            return {"datastore": refs(list(self.datastores)), "network": refs([])}.get(name)
        if e.ref.type == "Datastore":
            return await self._datastore_value(e.ref, self.datastores[e.ref], name)
        return None

    async def _datastore_value(self, ref: MoRef, d: Datastore, name: str) -> Value | None:
        if name in ("host", "vm"):
            return Array("DatastoreHostMount", ()) if name == "host" else refs([])
        if name == "capability":
            return data(
                "DatastoreCapability",
                directoryHierarchySupported=boolean(False),
                rawDiskMappingsSupported=boolean(False),
                perFileThinProvisioningSupported=boolean(False),
                storageIORMSupported=boolean(False),
                nativeSnapshotSupported=boolean(False),
            )
        if name not in ("summary", "info"):
            return None
        space = await self.services.datastores.space(d)
        if name == "summary":
            return data(
                "DatastoreSummary",
                datastore=ref,
                name=string(d.name),
                url=string(d.url),
                capacity=long(space.capacity),
                freeSpace=long(space.free_space),
                accessible=boolean(space.accessible),
                multipleHostAccess=boolean(d.shared),
                type=string(d.type),
                maintenanceMode=string("normal"),
            )
        return data(
            "DatastoreInfo",
            name=string(d.name),
            url=string(d.url),
            freeSpace=long(space.free_space),
            maxFileSize=long(space.max_file_size),
            maxMemoryFileSize=long(space.max_file_size),
            timestamp=date_time(time.time()),
        )

    async def _session_value(self, name: str, caller: Caller) -> Value | None:
        if caller.session is None:  # before login SessionManager shows nothing (govmomi's session check reads it)
            return None
        if name == "currentSession":
            return self.user_session(caller.session, caller)
        if name == "sessionList":
            sessions = await self.services.auth.sessions_of(caller.session.user)
            return Array("UserSession", tuple(self.user_session(s, caller) for s in sessions))
        if name == "defaultLocale":
            return string(LOCALE)
        if name in ("messageLocaleList", "supportedLocaleList"):
            return strings([LOCALE])
        return None

    @staticmethod
    def user_session(s: SessionView, caller: Caller) -> Data:
        """A UserSession; where it was opened from is known for the caller's own session only."""
        own = caller.session is not None and caller.session.id == s.id
        return data(
            "UserSession",
            key=string(s.id),
            userName=string(s.user),
            fullName=string(s.user),
            loginTime=date_time(s.created),
            lastActiveTime=date_time(s.last_accessed),
            locale=string(LOCALE),
            messageLocale=string(LOCALE),
            extensionSession=boolean(False),
            ipAddress=string(caller.address) if own else None,
            userAgent=string(caller.user_agent) if own else None,
        )
