// tests/deploy/check_manifests.mjs: checks deploy/'s manifests against their schemas. Run by
// tests/deploy/manifests.sh, with the test-only npm packages that tools/deps.sh installs into
// $SMLT_NPM_DIR (default ~/.cache/smlt/npm):
//
//   node check_manifests.mjs FILE...              exit 0 when every file passes
//   node check_manifests.mjs --negative FILE...   breaks each file in known ways (a wrong type,
//                                                 a missing required field, a limit passed) and
//                                                 exits 0 only when every broken copy is refused
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

// ---- the files ----

async function checkDoc(doc) {
  if (doc && doc.AWSTemplateFormatVersion) return checkCfn(doc);
  if (doc && doc.provider?.name === "openfaas") return checkOpenfaas(doc);
  if (doc && doc.apiVersion && doc.kind) return checkK8s(doc);
  return ["neither a Kubernetes object, a CloudFormation template nor an OpenFaaS stack"];
}

async function checkFile(file) {
  let docs;
  try {
    docs = parseDocs(fs.readFileSync(file, "utf8"));
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

const args = process.argv.slice(2);
const neg = args[0] === "--negative";
const files = neg ? args.slice(1) : args;
if (!files.length) die("usage: node check_manifests.mjs [--negative] FILE...");
if (neg) {
  // Run the checks one after another so that the counts are complete before the verdict.
  let accepted = 0, tried = 0;
  for (const file of files) {
    const docs = parseDocs(fs.readFileSync(file, "utf8"));
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
