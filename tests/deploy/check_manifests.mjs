// tests/deploy/check_manifests.mjs: checks deploy/'s manifests against their schemas. Run by
// tests/deploy/manifests.sh and tests/deploy/k8s.sh, with the test-only npm packages that
// tools/deps.sh installs into $SMLT_NPM_DIR (default ~/.cache/smlt/npm). FILE may be - (stdin),
// and may hold many YAML documents (a rendered kustomization):
//
//   node check_manifests.mjs FILE...              exit 0 when every file passes
//   node check_manifests.mjs --negative FILE...   breaks each file in known ways (a wrong type,
//                                                 a missing required field, a limit passed) and
//                                                 exits 0 only when every broken copy is refused
//   node check_manifests.mjs --cluster PLATFORM FILE [--secrets FILE]
//                                                 a rendered deploy/k8s overlay (knative,
//                                                 openfaas, lambda): every object against its
//                                                 schema, then the rules its objects must keep
//                                                 together (checkCluster()); --secrets: the
//                                                 Secrets make-secrets.sh --dry-run prints, which
//                                                 must hold every key the pods read
//   node check_manifests.mjs --cluster-negative PLATFORM FILE [--secrets FILE]
//                                                 broken copies of that overlay, each refused
//   node check_manifests.mjs --same FILE FILE     the same objects in both, in any order (two
//                                                 kubectl versions' renders)
//
// What a file is decides its checks:
//   - Kubernetes objects (apiVersion + kind): each YAML document against npm kubernetes-models,
//     or @kubernetes-models/knative for *.knative.dev groups. They refuse a wrong type or a
//     missing required field, not an unknown field.
//   - A CloudFormation template (AWSTemplateFormatVersion): every resource against the
//     CloudFormation resource specification of npm @aws-cdk/cfnspec (known type, required
//     properties, no unknown property, property types), every Ref, GetAtt, Sub and condition
//     names something that exists, and Lambda's limits (timeout 1-900 s, memory 128-10,240 MB)
//     with the project's needs (a VpcConfig; lambda:InvokeFunction granted on the function).
//   - An OpenFaaS stack (provider.name: openfaas): no schema is published, so its structure:
//     known keys, an image, string labels, scale.min <= scale.max, timeouts <= 900 s.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const npmDir = process.env.SMLT_NPM_DIR || path.join(os.homedir(), ".cache", "smlt", "npm");
const modules = path.join(npmDir, "node_modules");
const require = createRequire(path.join(modules, "noop.js"));

function die(msg) {
  console.error("check_manifests: " + msg);
  process.exit(2);
}

let YAML;
try {
  YAML = require("yaml");
} catch (e) {
  die(`npm yaml is missing from ${modules} (tools/deps.sh test installs it): ${e.message}`);
}

// CloudFormation's short-form tags, read as the long forms they stand for.
const scalar = (tag, key, f = (v) => v) => ({ tag, resolve: (s) => ({ [key]: f(s) }) });
const seq = (tag, key) => ({ tag, collection: "seq", resolve: (s) => ({ [key]: s.toJSON() }) });
const map = (tag, key) => ({ tag, collection: "map", resolve: (m) => ({ [key]: m.toJSON() }) });
const cfnTags = [
  scalar("!Ref", "Ref"), scalar("!Condition", "Condition"),
  scalar("!GetAtt", "Fn::GetAtt", (s) => s.split(".")), seq("!GetAtt", "Fn::GetAtt"),
  scalar("!Sub", "Fn::Sub"), seq("!Sub", "Fn::Sub"), scalar("!Base64", "Fn::Base64"),
  scalar("!GetAZs", "Fn::GetAZs"), scalar("!ImportValue", "Fn::ImportValue"),
  map("!Base64", "Fn::Base64"),
  ...["If", "Equals", "Not", "And", "Or", "Join", "Select", "Split", "FindInMap", "Cidr"]
    .map((f) => seq("!" + f, "Fn::" + f)),
];

function parseDocs(text) {
  const docs = YAML.parseAllDocuments(text, { customTags: cfnTags });
  for (const d of docs) if (d.errors.length) throw new Error(d.errors[0].message);
  return docs.map((d) => d.toJSON()).filter((d) => d !== null);
}

// ---- Kubernetes and Knative ----

async function k8sModel(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const rel = group.endsWith("knative.dev")
    ? `@kubernetes-models/knative/${group}/${version}/index.js`
    : `kubernetes-models/${group ? group + "/" : ""}${version}/index.js`;
  const file = path.join(modules, rel);
  if (!fs.existsSync(file)) {
    const pkg = group.endsWith("knative.dev") ? "@kubernetes-models/knative" : "kubernetes-models";
    if (!fs.existsSync(path.join(modules, pkg))) die(`npm ${pkg} is missing from ${modules} (tools/deps.sh test installs it)`);
    return null;
  }
  const mod = await import(pathToFileURL(file).href);
  return mod[kind] ?? null;
}

async function checkK8s(doc) {
  const errors = [];
  const where = `${doc.kind ?? "?"} ${doc.metadata?.name ?? "?"}`;
  const Model = await k8sModel(String(doc.apiVersion), String(doc.kind));
  if (!Model) return [`${where}: no schema for ${doc.apiVersion} ${doc.kind}`];
  try {
    new Model(doc).validate();
  } catch (e) {
    errors.push(`${where}: ${e.message}`);
  }
  return errors;
}

// ---- CloudFormation ----

let cfnSpec = null;
function spec() {
  if (!cfnSpec) {
    try {
      cfnSpec = require("@aws-cdk/cfnspec").specification();
    } catch (e) {
      die("npm @aws-cdk/cfnspec is missing (tools/deps.sh test installs it): " + e.message);
    }
  }
  return cfnSpec;
}

const intrinsic = (v) => v && typeof v === "object" && !Array.isArray(v) &&
  Object.keys(v).length === 1 && /^(Ref|Condition|Fn::.*)$/.test(Object.keys(v)[0]);

function checkPrimitive(type, v, at, errors) {
  const num = (x) => typeof x === "number" || (typeof x === "string" && x.trim() !== "" && !isNaN(Number(x)));
  const ok = {
    String: () => ["string", "number", "boolean"].includes(typeof v),
    Integer: () => num(v) && Number.isInteger(Number(v)),
    Long: () => num(v) && Number.isInteger(Number(v)),
    Double: () => num(v),
    Boolean: () => typeof v === "boolean" || v === "true" || v === "false",
    Json: () => typeof v === "object" && v !== null,
    Timestamp: () => typeof v === "string",
  }[type];
  if (ok && !ok()) errors.push(`${at}: ${JSON.stringify(v)} is not a ${type}`);
}

// Checks v against one property's specification (p: its entry in the spec).
function checkValue(resType, p, v, at, errors) {
  if (intrinsic(v)) {
    const [k] = Object.keys(v);
    if (k === "Fn::If" && Array.isArray(v[k]) && v[k].length === 3)
      for (const b of v[k].slice(1)) if (!(b && b.Ref === "AWS::NoValue")) checkValue(resType, p, b, at, errors);
    return;
  }
  const item = { PrimitiveType: p.PrimitiveItemType, Type: p.ItemType };
  if (p.PrimitiveType) return checkPrimitive(p.PrimitiveType, v, at, errors);
  if (p.Type === "List") {
    if (!Array.isArray(v)) return errors.push(`${at}: want a list`);
    v.forEach((x, i) => checkValue(resType, item, x, `${at}[${i}]`, errors));
  } else if (p.Type === "Map") {
    if (typeof v !== "object" || v === null || Array.isArray(v)) return errors.push(`${at}: want a map`);
    for (const [k, x] of Object.entries(v)) checkValue(resType, item, x, `${at}.${k}`, errors);
  } else if (p.Type) {
    const t = spec().PropertyTypes[`${resType}.${p.Type}`] ?? spec().PropertyTypes[p.Type];
    if (!t) return errors.push(`${at}: no specification for ${p.Type}`);
    checkProps(resType, t.Properties ?? {}, v, at, errors);
  }
}

function checkProps(resType, props, v, at, errors) {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return errors.push(`${at}: want an object`);
  for (const [k, x] of Object.entries(v)) {
    if (!props[k]) errors.push(`${at}: unknown property ${k}`);
    else checkValue(resType, props[k], x, `${at}.${k}`, errors);
  }
  for (const [k, p] of Object.entries(props))
    if (p.Required && !(k in v)) errors.push(`${at}: missing required property ${k}`);
}

// Every Ref, GetAtt, Sub variable and condition name in x, as [kind, name, attribute].
function references(x, out = []) {
  if (Array.isArray(x)) x.forEach((y) => references(y, out));
  else if (x && typeof x === "object") {
    for (const [k, v] of Object.entries(x)) {
      if (k === "Ref" && typeof v === "string") out.push(["Ref", v]);
      else if (k === "Fn::GetAtt") out.push(["GetAtt", ...(Array.isArray(v) ? v : String(v).split("."))]);
      else if (k === "Fn::Sub") {
        const s = Array.isArray(v) ? v[0] : v;
        const vars = Array.isArray(v) && v[1] ? Object.keys(v[1]) : [];
        for (const m of String(s).matchAll(/\$\{([^!}][^}]*)\}/g)) {
          const [name, attr] = m[1].split(".");
          if (!vars.includes(name)) out.push(attr ? ["GetAtt", name, attr] : ["Ref", name]);
        }
      } else if (k === "Fn::If" && Array.isArray(v)) out.push(["Condition", v[0]]);
      else if (k === "Condition" && typeof v === "string") out.push(["Condition", v]);
      references(v, out);
    }
  }
  return out;
}

// 1 when a policy, managed policy or role of the template allows lambda:InvokeFunction on the
// function fn (by GetAtt fn.Arn, ${fn.Arn} or Ref fn).
function invokeGranted(res, fn) {
  const docs = [];
  for (const r of Object.values(res)) {
    const p = r?.Properties ?? {};
    if (r?.Type === "AWS::IAM::Role") (p.Policies ?? []).forEach((x) => docs.push(x?.PolicyDocument));
    else if (/^AWS::IAM::(Managed)?Policy$/.test(r?.Type)) docs.push(p.PolicyDocument);
  }
  const names = (x) => [].concat(x ?? []);
  return docs.some((d) => names(d?.Statement).some((st) =>
    st?.Effect === "Allow" &&
    names(st.Action).some((a) => a === "lambda:InvokeFunction" || a === "lambda:*") &&
    names(st.Resource).some((r) => {
      const j = JSON.stringify(r);
      return j.includes(`["${fn}","Arn"]`) || j.includes(`\${${fn}.Arn}`) || j === JSON.stringify({ Ref: fn });
    })));
}

function literal(t, v) {
  if (intrinsic(v) && v.Ref && t.Parameters?.[v.Ref]) return t.Parameters[v.Ref];
  return { Default: v, MinValue: v, MaxValue: v };
}

function checkCfn(t) {
  const errors = [];
  const top = ["AWSTemplateFormatVersion", "Description", "Metadata", "Parameters", "Mappings",
    "Conditions", "Transform", "Resources", "Outputs", "Rules"];
  for (const k of Object.keys(t)) if (!top.includes(k)) errors.push(`unknown top-level section ${k}`);
  const res = t.Resources ?? {};
  if (!Object.keys(res).length) errors.push("no Resources");
  const params = t.Parameters ?? {};
  for (const [name, p] of Object.entries(params)) {
    if (!p || !p.Type) { errors.push(`Parameters.${name}: missing Type`); continue; }
    const d = p.Default;
    if (d !== undefined && p.Type === "Number") {
      if (isNaN(Number(d))) errors.push(`Parameters.${name}: default ${d} is not a number`);
      if (p.MinValue !== undefined && Number(d) < Number(p.MinValue)) errors.push(`Parameters.${name}: default below MinValue`);
      if (p.MaxValue !== undefined && Number(d) > Number(p.MaxValue)) errors.push(`Parameters.${name}: default above MaxValue`);
    }
    if (d !== undefined && p.AllowedValues && !p.AllowedValues.includes(d))
      errors.push(`Parameters.${name}: default ${d} not in AllowedValues`);
  }
  for (const [name, r] of Object.entries(res)) {
    const rs = spec().ResourceTypes[r?.Type];
    if (!rs) { errors.push(`Resources.${name}: unknown type ${r?.Type}`); continue; }
    checkProps(r.Type, rs.Properties ?? {}, r.Properties ?? {}, `Resources.${name}`, errors);
  }
  const pseudo = ["AWS::AccountId", "AWS::NoValue", "AWS::Partition", "AWS::Region", "AWS::StackId",
    "AWS::StackName", "AWS::URLSuffix", "AWS::NotificationARNs"];
  for (const [kind, name, attr] of references([t.Conditions, t.Resources, t.Outputs])) {
    if (kind === "Ref" && !(name in params) && !(name in res) && !pseudo.includes(name))
      errors.push(`Ref to ${name}, which is neither a parameter nor a resource`);
    if (kind === "Condition" && !(name in (t.Conditions ?? {}))) errors.push(`no condition ${name}`);
    if (kind === "GetAtt") {
      const rs = res[name] && spec().ResourceTypes[res[name].Type];
      if (!rs) errors.push(`GetAtt of ${name}, which is not a resource`);
      else if (!(attr in (rs.Attributes ?? {}))) errors.push(`GetAtt ${name}.${attr}: ${res[name].Type} has no such attribute`);
    }
  }
  // Lambda's limits (BRIEF.md section 4) and what the project's functions need.
  for (const [name, r] of Object.entries(res)) {
    if (r?.Type !== "AWS::Lambda::Function") continue;
    const p = r.Properties ?? {}, at = `Resources.${name}`;
    const to = literal(t, p.Timeout);
    if (to.Default === undefined || Number(to.MaxValue ?? to.Default) > 900 || Number(to.MinValue ?? to.Default) < 1)
      errors.push(`${at}.Timeout: want 1 to 900 s (Lambda's limit), got ${JSON.stringify(p.Timeout)}`);
    const mem = literal(t, p.MemorySize);
    if (mem.Default === undefined || Number(mem.MaxValue ?? mem.Default) > 10240 || Number(mem.MinValue ?? mem.Default) < 128)
      errors.push(`${at}.MemorySize: want 128 to 10,240 MB, and bounds on its parameter`);
    if (!p.VpcConfig?.SubnetIds || !p.VpcConfig?.SecurityGroupIds)
      errors.push(`${at}: no VpcConfig with subnets and security groups (the workers must reach the shards)`);
    if (!invokeGranted(res, name))
      errors.push(`${at}: no IAM policy grants lambda:InvokeFunction on it (the coordinator's)`);
  }
  return errors;
}

// ---- OpenFaaS ----

function seconds(s) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(String(s));
  if (!m) return NaN;
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2]];
}

function checkOpenfaas(doc) {
  const errors = [];
  const known = ["lang", "handler", "image", "fprocess", "environment", "environment_file", "secrets",
    "labels", "annotations", "limits", "requests", "constraints", "build_args", "build_options",
    "skip_build", "readonly_root_filesystem", "namespace"];
  if (!["1.0", 1].includes(doc.version)) errors.push(`version: want 1.0, got ${doc.version}`);
  if (typeof doc.provider?.gateway !== "string") errors.push("provider.gateway: want a URL");
  const fns = doc.functions;
  if (!fns || typeof fns !== "object" || !Object.keys(fns).length) errors.push("functions: none");
  for (const [name, f] of Object.entries(fns ?? {})) {
    const at = `functions.${name}`;
    if (!f || typeof f !== "object") { errors.push(`${at}: want an object`); continue; }
    for (const k of Object.keys(f)) if (!known.includes(k)) errors.push(`${at}: unknown key ${k}`);
    if (typeof f.image !== "string" || !f.image) errors.push(`${at}.image: missing`);
    for (const sect of ["environment", "labels", "annotations"])
      for (const [k, v] of Object.entries(f[sect] ?? {}))
        if (typeof v !== "string") errors.push(`${at}.${sect}.${k}: ${JSON.stringify(v)} must be a string`);
    for (const sect of ["limits", "requests"])
      for (const [k, v] of Object.entries(f[sect] ?? {}))
        if (!["memory", "cpu"].includes(k) || typeof v !== "string") errors.push(`${at}.${sect}.${k}: want memory or cpu, a string`);
    const lab = f.labels ?? {};
    const min = lab["com.openfaas.scale.min"], max = lab["com.openfaas.scale.max"];
    for (const [k, v] of [["min", min], ["max", max]])
      if (v !== undefined && !/^\d+$/.test(String(v))) errors.push(`${at}: com.openfaas.scale.${k} ${v} is not a count`);
    if (min !== undefined && max !== undefined && Number(min) > Number(max))
      errors.push(`${at}: com.openfaas.scale.min ${min} is above max ${max}`);
    for (const k of ["exec_timeout", "read_timeout", "write_timeout"]) {
      const v = f.environment?.[k];
      if (v === undefined) continue;
      const s = seconds(v);
      if (!(s > 0 && s <= 900)) errors.push(`${at}.environment.${k}: ${v}: want a duration up to 900s`);
    }
  }
  return errors;
}

// ---- a rendered deploy/k8s overlay (kubectl kustomize ... | --cluster PLATFORM) ----
//
// What a schema cannot say: that the objects of an overlay fit together and keep the
// deployment's rules (docs/DEPLOY.md). Each check names the object it is about.

const find = (docs, kind, name) => docs.find((d) => d?.kind === kind && d.metadata?.name === name);
const ofKind = (docs, kind) => docs.filter((d) => d?.kind === kind);

// 1 when a LabelSelector (matchLabels, matchExpressions) selects labels; an empty one selects all.
function selects(sel, labels = {}) {
  if (!sel) return false;
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = e.key in labels, inv = (e.values ?? []).includes(labels[e.key]);
    const ok = { In: has && inv, NotIn: !has || !inv, Exists: has, DoesNotExist: !has }[e.operator];
    if (!ok) return false;
  }
  return true;
}

// A container's command line, and one option's value ("--x v" or "--x=v"; undefined if absent).
const argv = (c) => [...(c?.command ?? []), ...(c?.args ?? [])].map(String);
function opt(av, name) {
  for (let i = 0; i < av.length; i++) {
    if (av[i] === name) return av[i + 1] ?? "";
    if (av[i].startsWith(name + "=")) return av[i].slice(name.length + 1);
  }
  return undefined;
}

// A memory quantity in MiB ("1Gi", "768Mi", "1G", "1073741824"); NaN when it is not one.
function mebibytes(q) {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(String(q ?? ""));
  if (!m) return NaN;
  const mult = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
  return (Number(m[1]) * (mult[m[2]] ?? 1)) / 2 ** 20;
}

// A probe's or Service's port as a number (a container port's name resolved).
function portOf(c, p) {
  if (typeof p === "number") return p;
  return c?.ports?.find((x) => x.name === p)?.containerPort;
}

// The volume that a file path of container c lies in: {volume, mount}, or null.
function volumeFor(pod, c, file) {
  let best = null;
  for (const m of c?.volumeMounts ?? []) {
    const dir = m.mountPath.replace(/\/$/, "");
    if ((file === dir || String(file).startsWith(dir + "/")) && (!best || dir.length > best.mount.mountPath.length))
      best = { mount: m, volume: pod.spec?.volumes?.find((v) => v.name === m.name) };
  }
  return best;
}

// Checks one workload's pod: its security context and that each file option lies in a Secret.
function checkPod(where, pod, c, fileOpts, secretKeys, errors) {
  const ps = pod.spec ?? {}, cs = c?.securityContext ?? {};
  if (!(cs.runAsNonRoot ?? ps.securityContext?.runAsNonRoot)) errors.push(`${where}: not runAsNonRoot`);
  if (cs.readOnlyRootFilesystem !== true) errors.push(`${where}: readOnlyRootFilesystem is not true`);
  if (cs.allowPrivilegeEscalation !== false) errors.push(`${where}: allowPrivilegeEscalation is not false`);
  if (!(cs.capabilities?.drop ?? []).includes("ALL")) errors.push(`${where}: capabilities do not drop ALL`);
  if ((cs.seccompProfile ?? ps.securityContext?.seccompProfile)?.type !== "RuntimeDefault")
    errors.push(`${where}: seccompProfile is not RuntimeDefault`);
  for (const [o, file] of fileOpts) {
    if (file === undefined) { errors.push(`${where}: no ${o}`); continue; }
    const v = volumeFor(pod, c, file);
    const name = v?.volume?.secret?.secretName;
    if (!name) { errors.push(`${where}: ${o} ${file} is not in a mounted Secret`); continue; }
    const key = file.slice(v.mount.mountPath.replace(/\/$/, "").length + 1);
    const items = v.volume.secret.items;
    const srcKey = items ? items.find((i) => i.path === key)?.key : key;
    if (secretKeys && !(secretKeys[name] ?? []).includes(srcKey))
      errors.push(`${where}: ${o} ${file} wants key ${srcKey} of Secret ${name}, which make-secrets.sh does not create`);
  }
  // $(VAR) in a command line is expanded from env only; a name not there is passed as it is.
  const env = (c?.env ?? []).map((e) => e.name);
  for (const a of argv(c))
    for (const m of a.matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g))
      if (!env.includes(m[1])) errors.push(`${where}: $(${m[1]}) in the command line is not in env`);
}

// 1 when a NetworkPolicy in docs admits peer p (a predicate on a `from` entry) to port on pods
// with these labels. An empty `from` admits everyone, which no rule here means to.
function admitted(docs, labels, port, p) {
  return ofKind(docs, "NetworkPolicy").some((np) => selects(np.spec?.podSelector, labels) &&
    (np.spec?.ingress ?? []).some((r) =>
      (!r.ports || r.ports.some((x) => x.port === port)) && (r.from ?? []).some(p)));
}
const fromPods = (labels) => (f) => !f.namespaceSelector && !f.ipBlock && selects(f.podSelector, labels);

// The worker pods' peer as each platform has it: Knative's in the namespace (the Knative
// Service's pod labels), OpenFaaS's in namespace openfaas-fn, Lambda's from the VPC.
function workerPeer(docs, platform, errors) {
  if (platform === "knative") {
    const ks = docs.find((d) => d?.kind === "Service" && String(d.apiVersion).startsWith("serving.knative.dev/"));
    if (!ks) { errors.push("no Knative Service: where do the workers run?"); return () => false; }
    return fromPods(ks.spec?.template?.metadata?.labels);
  }
  if (platform === "openfaas")
    return (f) => f.namespaceSelector?.matchLabels?.["kubernetes.io/metadata.name"] === "openfaas-fn" &&
      selects(f.podSelector ?? {}, { faas_function: "smlt-worker" });
  if (platform === "lambda") return (f) => typeof f.ipBlock?.cidr === "string";
  errors.push(`unknown platform ${platform}`);
  return () => false;
}

// secretKeys: {name: [keys]} of the Secrets make-secrets.sh creates, or null to skip that check.
function checkCluster(docs, platform, secretKeys) {
  const errors = [];
  const sts = find(docs, "StatefulSet", "smlt-ps");
  const dep = find(docs, "Deployment", "smlt-coordinator");
  if (!sts) errors.push("no StatefulSet smlt-ps (the PS nodes)");
  if (!dep) errors.push("no Deployment smlt-coordinator");
  if (!sts || !dep) return errors;
  const worker = workerPeer(docs, platform, errors);

  // The PS nodes.
  const pod = sts.spec.template, labels = pod.metadata?.labels ?? {};
  const c = pod.spec.containers.find((x) => x.name === "ps") ?? pod.spec.containers[0];
  const av = argv(c), at = "StatefulSet smlt-ps";
  const svc = find(docs, "Service", sts.spec.serviceName);
  if (!svc) errors.push(`${at}: serviceName ${sts.spec.serviceName} is no Service`);
  else {
    if (svc.spec?.clusterIP !== "None") errors.push(`Service ${svc.metadata.name}: not headless (clusterIP: None)`);
    if (svc.spec?.publishNotReadyAddresses !== true) errors.push(`Service ${svc.metadata.name}: publishNotReadyAddresses is not true`);
    if (!selects({ matchLabels: svc.spec?.selector }, labels)) errors.push(`Service ${svc.metadata.name}: does not select the PS pods`);
    if (!(svc.spec?.ports ?? []).some((p) => p.port === 7000)) errors.push(`Service ${svc.metadata.name}: no port 7000`);
  }
  if (!av.includes("--node")) errors.push(`${at}: smlt-ps without --node`);
  if (!/:7000$/.test(opt(av, "--listen") ?? "")) errors.push(`${at}: --listen is not on port 7000`);
  if (!/:9100$/.test(opt(av, "--metrics-listen") ?? "")) errors.push(`${at}: --metrics-listen is not on port 9100`);
  const memMb = Number(opt(av, "--memory-mb"));
  const limit = mebibytes(c.resources?.limits?.memory);
  if (!Number.isInteger(memMb) || memMb <= 0) errors.push(`${at}: --memory-mb ${opt(av, "--memory-mb")} is not a size in MB`);
  else if (!(limit > 0)) errors.push(`${at}: no memory limit`);
  else if (memMb > 0.75 * limit)
    errors.push(`${at}: --memory-mb ${memMb} is more than 3/4 of the memory limit (${limit} MiB): the process needs the rest`);
  if (!c.resources?.requests?.memory || !c.resources?.requests?.cpu) errors.push(`${at}: no cpu and memory requests`);
  for (const kind of ["readinessProbe", "livenessProbe"]) {
    const p = c[kind]?.httpGet;
    if (p?.path !== "/healthz" || portOf(c, p.port) !== 9100) errors.push(`${at}: ${kind} is not httpGet /healthz on 9100`);
  }
  const ann = pod.metadata?.annotations ?? {};
  if (ann["prometheus.io/scrape"] !== "true" || ann["prometheus.io/port"] !== "9100")
    errors.push(`${at}: no prometheus.io/scrape "true" and prometheus.io/port "9100" annotations`);
  const ckpt = opt(av, "--checkpoint-dir");
  const vct = (sts.spec.volumeClaimTemplates ?? []).map((v) => v.metadata?.name);
  const ckm = (c.volumeMounts ?? []).find((m) => m.mountPath === ckpt);
  if (ckpt !== "/var/lib/smlt/checkpoints" || !ckm || !vct.includes(ckm.name))
    errors.push(`${at}: --checkpoint-dir is not /var/lib/smlt/checkpoints on a volumeClaimTemplate`);
  checkPod(at, pod, c, ["--admin-token-file", "--tls-cert", "--tls-key", "--tls-ca"].map((o) => [o, opt(av, o)]),
    secretKeys, errors);
  const sa = find(docs, "ServiceAccount", pod.spec.serviceAccountName);
  if (!sa) errors.push(`${at}: serviceAccountName ${pod.spec.serviceAccountName} is no ServiceAccount`);
  if ((pod.spec.automountServiceAccountToken ?? sa?.automountServiceAccountToken) !== false)
    errors.push(`${at}: its pods get an API token (automountServiceAccountToken is not false)`);
  const pdbs = ofKind(docs, "PodDisruptionBudget").filter((p) => selects(p.spec?.selector, labels));
  if (!pdbs.length) errors.push(`${at}: no PodDisruptionBudget selects its pods`);
  else if (pdbs.some((p) => p.spec.maxUnavailable !== 1)) errors.push(`${at}: its PodDisruptionBudget's maxUnavailable is not 1`);

  // The coordinator.
  const cpod = dep.spec.template, clabels = cpod.metadata?.labels ?? {};
  const cc = cpod.spec.containers.find((x) => x.name === "coordinator") ?? cpod.spec.containers[0];
  const cav = argv(cc), cat = "Deployment smlt-coordinator";
  if (dep.spec.replicas !== 1) errors.push(`${cat}: replicas is not 1 (one coordinator owns the journals)`);
  if (dep.spec.strategy?.type !== "Recreate") errors.push(`${cat}: strategy is not Recreate`);
  const ports = ["--listen", "--rpc-listen"].map((o) => Number(/:(\d+)$/.exec(opt(cav, o) ?? "")?.[1]));
  const csvc = ofKind(docs, "Service").find((s) => s.apiVersion === "v1" && s.spec?.selector &&
    s.spec.type !== "LoadBalancer" && selects({ matchLabels: s.spec.selector }, clabels));
  if (!ports.every((p) => p > 0)) errors.push(`${cat}: --listen and --rpc-listen need explicit ports`);
  else if (!csvc || !ports.every((p) => (csvc.spec.ports ?? []).some((x) => x.port === p)))
    errors.push(`${cat}: no Service selects it with the API and worker RPC ports ${ports.join(", ")}`);
  const data = volumeFor(cpod, cc, opt(cav, "--data-dir") ?? "");
  const claim = data?.volume?.persistentVolumeClaim?.claimName;
  if (!claim || !find(docs, "PersistentVolumeClaim", claim))
    errors.push(`${cat}: --data-dir is not on a PersistentVolumeClaim of the overlay`);
  checkPod(cat, cpod, cc, ["--admin-token-file", "--ps-pool-token-file", "--tls-cert", "--tls-key", "--tls-ca"]
    .map((o) => [o, opt(cav, o)]), secretKeys, errors);
  if (opt(cav, "--platform") !== platform) errors.push(`${cat}: --platform is ${opt(cav, "--platform")}, not ${platform}`);
  const need = { knative: ["--function-url"], openfaas: ["--gateway", "--function"], lambda: ["--function", "--region"] };
  for (const o of ["--rpc-advertise", ...(need[platform] ?? [])]) if (!opt(cav, o)) errors.push(`${cat}: no ${o}`);
  const pool = opt(cav, "--ps-pool") ?? "";
  if (!pool) errors.push(`${cat}: no --ps-pool`);
  else if (platform === "lambda") {
    const hosts = pool.split(",");
    if (hosts.length !== sts.spec.replicas || !hosts.every((h) => /^[A-Za-z0-9.-]+:7000$/.test(h)))
      errors.push(`${cat}: --ps-pool ${pool} is not one host:7000 per PS node (${sts.spec.replicas})`);
  } else if (!pool.startsWith(`dns:${svc?.metadata?.name}.`) || !pool.endsWith(":7000"))
    errors.push(`${cat}: --ps-pool ${pool} is not dns:${svc?.metadata?.name}.NAMESPACE...:7000 (the headless Service)`);
  for (const kind of ["readinessProbe", "livenessProbe"])
    if (!cc[kind]) errors.push(`${cat}: no ${kind}`);

  // Its identity: a ServiceAccount bound to a read-only Role without Secrets.
  const csa = cpod.spec.serviceAccountName;
  if (!csa || !find(docs, "ServiceAccount", csa)) errors.push(`${cat}: serviceAccountName ${csa} is no ServiceAccount`);
  const rbs = ofKind(docs, "RoleBinding").filter((b) => (b.subjects ?? []).some((s) => s.kind === "ServiceAccount" && s.name === csa));
  if (!rbs.length) errors.push(`${cat}: no RoleBinding for its ServiceAccount ${csa}`);
  for (const b of rbs) {
    const role = b.roleRef?.kind === "Role" && find(docs, "Role", b.roleRef.name);
    if (!role) { errors.push(`RoleBinding ${b.metadata.name}: binds no Role of the overlay (a ClusterRole is too wide)`); continue; }
    for (const r of role.rules ?? []) {
      const bad = (r.verbs ?? []).filter((v) => !["get", "list", "watch"].includes(v));
      if (bad.length) errors.push(`Role ${role.metadata.name}: verbs ${bad.join(", ")}: the coordinator only reads`);
      if ((r.resources ?? []).some((x) => ["*", "secrets"].includes(x)))
        errors.push(`Role ${role.metadata.name}: reads ${r.resources.join(", ")}`);
    }
  }

  // Who may reach what.
  if (!ofKind(docs, "NetworkPolicy").some((np) => selects(np.spec?.podSelector, labels)))
    errors.push("no NetworkPolicy selects the PS pods: port 7000 is open to all");
  if (!admitted(docs, labels, 7000, worker)) errors.push(`NetworkPolicy: the ${platform} workers may not reach the PS port 7000`);
  if (!admitted(docs, labels, 7000, fromPods(clabels))) errors.push("NetworkPolicy: the coordinator may not reach the PS port 7000");
  if (!admitted(docs, labels, 7000, fromPods(labels))) errors.push("NetworkPolicy: a PS node may not reach another's port 7000 (backups)");
  if (!admitted(docs, labels, 9100, () => true)) errors.push("NetworkPolicy: nobody (Prometheus) may reach the PS port 9100");
  if (!admitted(docs, clabels, ports[1], worker)) errors.push(`NetworkPolicy: the ${platform} workers may not reach the worker RPC`);
  if (!admitted(docs, clabels, ports[0], (f) => f.namespaceSelector && !Object.keys(f.namespaceSelector).length))
    errors.push("NetworkPolicy: the coordinator's API is not open to the cluster");

  // Lambda: every node and the worker RPC on an internal load balancer of their own.
  if (platform === "lambda") {
    const lbs = ofKind(docs, "Service").filter((s) => s.spec?.type === "LoadBalancer");
    const internal = (s) => s.metadata?.annotations?.["service.beta.kubernetes.io/aws-load-balancer-scheme"] === "internal";
    for (let i = 0; i < sts.spec.replicas; i++) {
      const pl = { ...labels, "statefulset.kubernetes.io/pod-name": `${sts.metadata.name}-${i}` };
      const mine = lbs.filter((s) => selects({ matchLabels: s.spec.selector }, pl) &&
        s.spec.selector["statefulset.kubernetes.io/pod-name"] && (s.spec.ports ?? []).some((p) => p.port === 7000));
      if (mine.length !== 1 || !internal(mine[0]))
        errors.push(`no internal LoadBalancer Service of its own for PS node ${sts.metadata.name}-${i} on 7000`);
    }
    if (!lbs.some((s) => internal(s) && selects({ matchLabels: s.spec.selector }, clabels) &&
      (s.spec.ports ?? []).some((p) => p.port === ports[1])))
      errors.push("no internal LoadBalancer Service for the coordinator's worker RPC");
    if (!admitted(docs, labels, 9100, (f) => f.ipBlock)) errors.push("NetworkPolicy: the NLBs' health checks may not reach 9100");
  }
  return errors;
}

// The broken overlays of --cluster-negative: [what, platforms (null: all), how, the message].
const sts0 = (docs) => find(docs, "StatefulSet", "smlt-ps");
const psC = (docs) => sts0(docs).spec.template.spec.containers[0];
const coordC = (docs) => find(docs, "Deployment", "smlt-coordinator").spec.template.spec.containers[0];
const setArg = (c, name, value) => {
  for (const list of [c.command, c.args]) {
    const i = (list ?? []).indexOf(name);
    if (i >= 0) { list[i + 1] = value; return; }
  }
};
const dropArg = (c, name) => {
  for (const list of [c.command, c.args]) {
    const i = (list ?? []).indexOf(name);
    if (i >= 0) list.splice(i, 2);
  }
};
const clusterBreakages = [
  ["no PodDisruptionBudget", null, (docs) => docs.splice(docs.findIndex((d) => d.kind === "PodDisruptionBudget"), 1),
    "no PodDisruptionBudget"],
  ["--memory-mb 900 under a 1Gi limit", null, (docs) => setArg(psC(docs), "--memory-mb", "900"), "more than 3/4"],
  ["the PS Service not headless", null, (docs) => { delete find(docs, "Service", "smlt-ps").spec.clusterIP; }, "not headless"],
  ["no volumeClaimTemplates", null, (docs) => { delete sts0(docs).spec.volumeClaimTemplates; }, "volumeClaimTemplate"],
  ["readiness on the data port", null, (docs) => { psC(docs).readinessProbe.httpGet.port = 7000; }, "readinessProbe is not"],
  ["a writable root filesystem", null,
    (docs) => { psC(docs).securityContext.readOnlyRootFilesystem = false; }, "readOnlyRootFilesystem"],
  ["the PS token file outside its Secret", null, (docs) => setArg(psC(docs), "--admin-token-file", "/tmp/token"),
    "not in a mounted Secret"],
  ["a PS ServiceAccount with a token", null,
    (docs) => { find(docs, "ServiceAccount", "smlt-ps").automountServiceAccountToken = true; delete sts0(docs).spec.template.spec.automountServiceAccountToken; },
    "automountServiceAccountToken"],
  ["a rolling coordinator", null, (docs) => { find(docs, "Deployment", "smlt-coordinator").spec.strategy = { type: "RollingUpdate" }; },
    "not Recreate"],
  ["no --ps-pool", null, (docs) => dropArg(coordC(docs), "--ps-pool"), "no --ps-pool"],
  ["the coordinator on another platform", null, (docs) => setArg(coordC(docs), "--platform", "local"), "--platform is local"],
  ["a misspelt $(VAR)", null, (docs) => coordC(docs).args.push("--callback-url=https://$(POD_NAMESPAC)"),
    "is not in env"],
  ["the data directory's claim missing", null,
    (docs) => docs.splice(docs.findIndex((d) => d.kind === "PersistentVolumeClaim"), 1), "PersistentVolumeClaim of the overlay"],
  ["a Role that writes Secrets", null,
    (docs) => find(docs, "Role", "smlt-coordinator").rules.push({ apiGroups: [""], resources: ["secrets"], verbs: ["create"] }),
    "the coordinator only reads"],
  ["the workers' rule gone from the PS policy", null, (docs) => {
    const np = find(docs, "NetworkPolicy", "smlt-ps");
    np.spec.ingress[0].from = np.spec.ingress[0].from.filter((f) => !(f.ipBlock || f.namespaceSelector || f.podSelector?.matchLabels?.["smlt.io/role"] === "worker"));
  }, "workers may not reach the PS port"],
  ["the PS port open to all", null, (docs) => { find(docs, "NetworkPolicy", "smlt-ps").spec.podSelector = { matchLabels: { x: "y" } }; },
    "no NetworkPolicy selects the PS pods"],
  ["a PS node without its load balancer", ["lambda"], (docs) => docs.splice(docs.findIndex((d) => d.metadata?.name === "smlt-ps-2-nlb"), 1),
    "smlt-ps-2 on 7000"],
  ["a node missing from the pool", ["lambda"], (docs) => setArg(coordC(docs), "--ps-pool", "ps-0.smlt.example:7000"),
    "one host:7000 per PS node"],
];

// ---- the files ----

async function checkDoc(doc) {
  if (doc && doc.AWSTemplateFormatVersion) return checkCfn(doc);
  if (doc && doc.provider?.name === "openfaas") return checkOpenfaas(doc);
  if (doc && doc.apiVersion && doc.kind) return checkK8s(doc);
  return ["neither a Kubernetes object, a CloudFormation template nor an OpenFaaS stack"];
}

const readText = (file) => fs.readFileSync(file === "-" ? 0 : file, "utf8");

async function checkFile(file) {
  let docs;
  try {
    docs = parseDocs(readText(file));
  } catch (e) {
    return [`cannot read: ${e.message}`];
  }
  if (!docs.length) return ["no document"];
  const errors = [];
  for (const d of docs) errors.push(...(await checkDoc(d)));
  return errors;
}

// The broken copies of --negative: [what, which documents, how to break one, a piece of the
// message that must refuse it]. Each kind of file gets a wrong type, a missing required field
// and, where the platform has one, a limit passed.
const knative = (d) => d.kind === "Service" && String(d.apiVersion).includes("knative");
const cfn = (d) => d.AWSTemplateFormatVersion;
const faas = (d) => d.provider?.name === "openfaas";
const eachFn = (f) => (d) => Object.values(d.functions).forEach(f);
const lambda = (d) => d.Resources.WorkerFunction.Properties;
const breakages = [
  ["Knative containerConcurrency as a string", knative,
    (d) => { d.spec.template.spec.containerConcurrency = "one"; }, "containerConcurrency must be integer"],
  ["Knative container port as a string", knative,
    (d) => { d.spec.template.spec.containers[0].ports[0].containerPort = "http"; }, "containerPort must be integer"],
  ["Knative container without its name", knative,
    (d) => { delete d.spec.template.spec.containers[0].name; }, "required property name"],
  ["StatefulSet without a selector", (d) => d.kind === "StatefulSet",
    (d) => { delete d.spec.selector; }, "required property selector"],
  ["StatefulSet replicas as a word", (d) => d.kind === "StatefulSet",
    (d) => { d.spec.replicas = "two"; }, "replicas must be integer"],
  ["Deployment container without its name", (d) => d.kind === "Deployment",
    (d) => { delete d.spec.template.spec.containers[0].name; }, "required property name"],
  ["Service port as a string", (d) => d.kind === "Service" && d.apiVersion === "v1",
    (d) => { d.spec.ports[0].port = "http"; }, "port must be integer"],
  ["NetworkPolicy ingress as a map", (d) => d.kind === "NetworkPolicy",
    (d) => { d.spec.ingress = { from: [] }; }, "ingress must be array"],
  ["PodDisruptionBudget selector as a string", (d) => d.kind === "PodDisruptionBudget",
    (d) => { d.spec.selector = "smlt-ps"; }, "selector must be object"],
  ["RoleBinding without its roleRef", (d) => d.kind === "RoleBinding",
    (d) => { delete d.roleRef; }, "required property roleRef"],
  ["Role rule verbs as a string", (d) => d.kind === "Role",
    (d) => { d.rules[0].verbs = "get"; }, "verbs must be array"],
  ["Lambda Timeout 901 s", cfn, (d) => { lambda(d).Timeout = 901; }, "Lambda's limit"],
  ["Lambda Timeout as a word", cfn, (d) => { lambda(d).Timeout = "fifteen minutes"; }, "is not a Integer"],
  ["Lambda without its required Code", cfn, (d) => { delete lambda(d).Code; }, "missing required property Code"],
  ["Lambda property misspelt", cfn, (d) => { lambda(d).MemorySise = 1769; }, "unknown property MemorySise"],
  ["Lambda VpcConfig subnets as a map", cfn, (d) => { lambda(d).VpcConfig.SubnetIds = { a: "b" }; }, "want a list"],
  ["Lambda without VpcConfig", cfn, (d) => { delete lambda(d).VpcConfig; }, "no VpcConfig"],
  ["Lambda memory parameter allowed above 10,240 MB", cfn,
    (d) => { d.Parameters.MemorySize.MaxValue = 20480; }, "MemorySize: want 128 to 10,240 MB"],
  ["the coordinator's invoke policy granting another action", cfn,
    (d) => { d.Resources.CoordinatorInvokePolicy.Properties.PolicyDocument.Statement[0].Action = "lambda:GetFunction"; },
    "lambda:InvokeFunction"],
  ["a Ref to nothing", cfn, (d) => { lambda(d).Role = { Ref: "NoSuchRole" }; }, "Ref to NoSuchRole"],
  ["a GetAtt of an attribute the type lacks", cfn,
    (d) => { lambda(d).Role = { "Fn::GetAtt": ["WorkerRole", "Nope"] }; }, "has no such attribute"],
  ["OpenFaaS function without an image", faas, eachFn((f) => { delete f.image; }), "image: missing"],
  ["OpenFaaS scale.min above max", faas,
    eachFn((f) => { f.labels["com.openfaas.scale.min"] = "100"; }), "is above max"],
  ["OpenFaaS exec_timeout past 900 s", faas,
    eachFn((f) => { f.environment.exec_timeout = "20m"; }), "up to 900s"],
  ["OpenFaaS scale label as a number", faas,
    eachFn((f) => { f.labels["com.openfaas.scale.max"] = 64; }), "must be a string"],
];

// A rendered overlay, and its Secrets (make-secrets.sh --dry-run) as {name: [keys]}.
function renderedArgs(rest) {
  const [platform, file, ...more] = rest;
  if (!platform || !file) die("usage: node check_manifests.mjs --cluster[-negative] PLATFORM FILE [--secrets FILE]");
  const docs = parseDocs(readText(file));
  let secrets = null, secretDocs = [];
  if (more[0] === "--secrets" && more[1]) {
    secretDocs = parseDocs(readText(more[1])).filter((d) => d.kind === "Secret");
    secrets = Object.fromEntries(secretDocs.map((d) => [d.metadata.name, Object.keys({ ...d.data, ...d.stringData })]));
  }
  return { platform, file, docs, secrets, secretDocs };
}

// One line per object in a fixed order, keys sorted: two renders compare equal when they hold
// the same objects, whatever order each printed them in.
function canonical(docs) {
  const sortKeys = (x) => Array.isArray(x) ? x.map(sortKeys) : x && typeof x === "object"
    ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, sortKeys(x[k])])) : x;
  const id = (d) => [d.apiVersion, d.kind, d.metadata?.namespace ?? "", d.metadata?.name].join(" ");
  return docs.map((d) => [id(d), JSON.stringify(sortKeys(d))]).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

const args = process.argv.slice(2);
const mode = args[0];
if (mode === "--same") {
  // --same A B: the same objects (two kubectl versions' renders of one overlay).
  if (args.length !== 3) die("usage: node check_manifests.mjs --same FILE FILE");
  const [a, b] = args.slice(1).map((f) => canonical(parseDocs(readText(f))));
  const ids = new Set([...a, ...b].map((x) => x[0]));
  let diff = 0;
  for (const id of ids) {
    const x = a.find((y) => y[0] === id)?.[1], y = b.find((z) => z[0] === id)?.[1];
    if (x !== y) {
      diff++;
      console.error(`${id}: ` + (!x ? `only in ${args[2]}` : !y ? `only in ${args[1]}` : `differs:\n  ${x}\n  ${y}`));
    }
  }
  console.log(`${ids.size} objects, ${diff} differ`);
  process.exit(diff ? 1 : 0);
}
if (mode === "--cluster") {
  // --cluster PLATFORM FILE [--secrets FILE]: every object against its schema, then the rules
  // of checkCluster().
  const { platform, file, docs, secrets, secretDocs } = renderedArgs(args.slice(1));
  const errors = [];
  for (const d of [...docs, ...secretDocs]) errors.push(...(await checkDoc(d)));
  if (secrets && secretDocs.find((d) => d.metadata.name === "smlt-tls")?.type !== "kubernetes.io/tls")
    errors.push("Secret smlt-tls: not of type kubernetes.io/tls");
  errors.push(...checkCluster(docs, platform, secrets));
  for (const e of errors) console.error(`${file}: ${e}`);
  console.log(`${file}: ${docs.length} objects` + (secrets ? ` and ${secretDocs.length} Secrets` : "") +
    (errors.length ? `, ${errors.length} problems` : ", ok"));
  process.exit(errors.length ? 1 : 0);
}
if (mode === "--cluster-negative") {
  // --cluster-negative PLATFORM FILE [--secrets FILE]: each broken copy of the overlay must be
  // refused for its reason (and the overlay itself pass, or the refusals would prove nothing).
  const { platform, docs, secrets } = renderedArgs(args.slice(1));
  const base = checkCluster(docs, platform, secrets);
  if (base.length) die(`the overlay itself does not pass: ${base.join("; ")}`);
  let accepted = 0, tried = 0;
  for (const [what, platforms, breakIt, expect] of clusterBreakages) {
    if (platforms && !platforms.includes(platform)) continue;
    const copy = structuredClone(docs);
    breakIt(copy);
    tried++;
    const why = checkCluster(copy, platform, secrets).find((e) => e.includes(expect));
    if (why) console.log(`refused as it should be: ${platform}: ${what}: ${why}`);
    else { accepted++; console.error(`NOT REFUSED for "${expect}": ${platform}: ${what}`); }
  }
  console.log(`${tried} broken copies, ${tried - accepted} refused, ${accepted} accepted`);
  process.exit(accepted || !tried ? 1 : 0);
}
const neg = mode === "--negative";
const files = neg ? args.slice(1) : args;
if (!files.length) die("usage: node check_manifests.mjs [--negative] FILE...");
if (neg) {
  // Run the checks one after another so that the counts are complete before the verdict.
  let accepted = 0, tried = 0;
  for (const file of files) {
    const docs = parseDocs(readText(file));
    for (const [what, applies, breakIt, expect] of breakages) {
      for (const [i, doc] of docs.entries()) {
        if (!applies(doc)) continue;
        const copy = structuredClone(doc);
        breakIt(copy);
        tried++;
        const errors = await checkDoc(copy);
        const why = errors.find((e) => e.includes(expect));
        const name = `${path.basename(file)}[${i}] ${what}`;
        if (why) console.log(`refused as it should be: ${name}: ${why}`);
        else {
          accepted++;
          console.error(`NOT REFUSED for "${expect}": ${name}` + (errors.length ? ` (only: ${errors.join("; ")})` : ""));
        }
      }
    }
  }
  console.log(`${tried} broken copies, ${tried - accepted} refused, ${accepted} accepted`);
  process.exit(accepted || !tried ? 1 : 0);
}
let bad = 0;
for (const file of files) {
  const errors = await checkFile(file);
  if (errors.length) {
    bad++;
    for (const e of errors) console.error(`${file}: ${e}`);
  } else console.log(`${file}: ok`);
}
process.exit(bad ? 1 : 0);
