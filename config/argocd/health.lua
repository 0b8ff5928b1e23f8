-- Argo CD health check for podidentity.dev/PodIdentityBinding.
--
-- Healthy     Ready=True, observed at the current generation.
-- Degraded    Ready=False with a reason someone must act on (bad spec, guardrail,
--             conflict, missing role or ServiceAccount, AWS access, missing cluster,
--             quota, blocked cleanup), or a kstatus Stalled=True condition.
-- Progressing everything else: no status yet, a generation not yet observed,
--             Reconciling=True, retries of transient errors, AWS throttling,
--             role propagation.
local hs = {}

local degraded = {
  InvalidSpec = true,
  PolicyDenied = true,
  RoleConflict = true,
  AssociationConflict = true,
  RoleNotFound = true,
  RoleTrustMissing = true,
  ServiceAccountNotFound = true,
  AccessDenied = true,
  ClusterNotFound = true,
  QuotaExceeded = true,
  CleanupBlocked = true,
}

local function condition(conditions, wanted)
  for _, c in ipairs(conditions) do
    if c.type == wanted then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = c.reason or "Unknown"
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local conditions = obj.status.conditions
local generation = obj.metadata.generation
local ready = condition(conditions, "Ready")

if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

local observed = ready.observedGeneration
if observed == nil then
  observed = obj.status.observedGeneration
end
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local stalled = condition(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

if ready.status == "True" then
  local reconciling = condition(conditions, "Reconciling")
  if reconciling ~= nil and reconciling.status == "True" then
    hs.status = "Progressing"
    hs.message = describe(reconciling)
    return hs
  end
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

if ready.status == "False" and degraded[ready.reason] then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = describe(ready)
return hs
