// Validating Kubernetes objects against the API schemas, without a cluster.
//
// kubernetes-models' validate() checks types, enums and required fields, but
// its schemas allow additional properties: `hostNetwok: true` passes, and so
// does any other misspelt field, which the API server would drop with only a
// warning. So each object is also checked field by field against the type
// declarations that kubernetes-models generates from the same OpenAPI
// definitions: a field the declared type does not have is an error.
import { createRequire } from 'node:module';
import path from 'node:path';
import ts from 'typescript';

const require = createRequire(import.meta.url);
const modelsRoot = path.dirname(require.resolve('kubernetes-models/package.json'));

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata?: { name?: string; namespace?: string; [key: string]: unknown };
  [key: string]: unknown;
}

export class SchemaError extends Error {
  override name = 'SchemaError';
}

/** `apps/v1` + `DaemonSet` -> `apps/v1/DaemonSet`; the core group is bare `v1`. */
function modelPath(object: KubeObject): string {
  return `${object.apiVersion}/${object.kind}`;
}

interface ModelClass {
  new (data: unknown): { validate(): void };
}

/** kubernetes-models' class for the object's apiVersion and kind. */
export async function modelClass(object: KubeObject): Promise<ModelClass> {
  let module: Record<string, unknown>;
  try {
    module = (await import(`kubernetes-models/${modelPath(object)}`)) as Record<string, unknown>;
  } catch (err) {
    throw new SchemaError(`no Kubernetes model for ${object.apiVersion} ${object.kind}`, { cause: err });
  }
  const model = module[object.kind];
  if (typeof model !== 'function') throw new SchemaError(`kubernetes-models/${modelPath(object)} exports no ${object.kind}`);
  return model as ModelClass;
}

let program: { checker: ts.TypeChecker; roots: Map<string, ts.Type> } | undefined;

/** One TypeScript program over every model declaration asked for so far; rebuilt when a new kind appears. */
function declaredType(object: KubeObject): ts.Type {
  const key = modelPath(object);
  if (program?.roots.has(key)) return program.roots.get(key)!;
  const keys = [...(program?.roots.keys() ?? []), key];
  const files = keys.map((k) => path.join(modelsRoot, `${k}.d.ts`));
  const built = ts.createProgram(files, {
    noEmit: true,
    types: [],
    skipLibCheck: true,
    module: ts.ModuleKind.CommonJS,
    // The declarations import each other without extensions, as Node10 resolution expects.
    moduleResolution: ts.ModuleResolutionKind.Node10,
  });
  const checker = built.getTypeChecker();
  const roots = new Map<string, ts.Type>();
  keys.forEach((k, i) => {
    const source = built.getSourceFile(files[i]!);
    const kind = k.slice(k.lastIndexOf('/') + 1);
    const moduleSymbol = source && checker.getSymbolAtLocation(source);
    const symbol = moduleSymbol && checker.getExportsOfModule(moduleSymbol).find((s) => s.name === `I${kind}`);
    if (!symbol) throw new SchemaError(`no declaration I${kind} in ${files[i]}`);
    roots.set(k, checker.getDeclaredTypeOfSymbol(symbol));
  });
  program = { checker, roots };
  return roots.get(key)!;
}

function unknownFields(checker: ts.TypeChecker, value: unknown, declared: ts.Type, where: string, out: string[]): void {
  // Scalars are validate()'s job (types, enums, formats).
  if (value === null || typeof value !== 'object') return;
  const type = checker.getNonNullableType(declared);
  if (type.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) return;
  if (type.isUnion()) {
    const objects = type.types.filter((t) => t.flags & ts.TypeFlags.Object);
    if (objects.length === 1) return unknownFields(checker, value, objects[0]!, where, out);
    if (objects.length === 0) {
      out.push(`${where}: an object or list where the schema wants ${checker.typeToString(type)}`);
      return;
    }
    throw new SchemaError(`${where}: the schema allows several object shapes (${checker.typeToString(type)}); teach schema.ts to pick one`);
  }
  if (Array.isArray(value)) {
    const element = checker.getIndexTypeOfType(type, ts.IndexKind.Number);
    if (!element) {
      out.push(`${where}: a list where the schema wants ${checker.typeToString(type)}`);
      return;
    }
    value.forEach((item, i) => unknownFields(checker, item, element, `${where}[${i}]`, out));
    return;
  }
  // A map such as labels or resources.requests declares a string index and no fields.
  const mapValue = checker.getIndexTypeOfType(type, ts.IndexKind.String);
  for (const [key, child] of Object.entries(value)) {
    const field = checker.getPropertyOfType(type, key);
    if (field) unknownFields(checker, child, checker.getTypeOfSymbol(field), `${where}.${key}`, out);
    else if (mapValue) unknownFields(checker, child, mapValue, `${where}.${key}`, out);
    else out.push(`${where}.${key}: no such field in ${checker.typeToString(type)}`);
  }
}

/** The fields of `object` that its kind's schema does not define, as `Kind.path.to.field: ...` lines. */
export function strictSchemaErrors(object: KubeObject): string[] {
  const type = declaredType(object);
  const out: string[] = [];
  unknownFields(program!.checker, object, type, object.kind, out);
  return out;
}

/**
 * Validates one object: kubernetes-models' schema validation, then the
 * strict field check. Throws a SchemaError naming every problem.
 */
export async function validateObject(object: KubeObject): Promise<void> {
  const Model = await modelClass(object);
  try {
    new Model(object).validate();
  } catch (err) {
    throw new SchemaError(`${object.kind} ${object.metadata?.name ?? '(unnamed)'}: ${(err as Error).message}`, { cause: err });
  }
  const unknown = strictSchemaErrors(object);
  if (unknown.length > 0) throw new SchemaError(`${object.kind} ${object.metadata?.name ?? '(unnamed)'}: ${unknown.join('; ')}`);
}
