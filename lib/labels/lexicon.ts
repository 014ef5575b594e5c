/**
 * Spelling variants of the rules' terms, expanded once when the rules are compiled so that
 * matching stays a literal lookup. The rules file lists groups of interchangeable spellings
 * (`"equivalents": [["视盘", "视乳头", "视神经乳头"], ["黄斑", "黄斑区", "黄斑部"], ["性", "型", ""]]`);
 * every occurrence of a member inside a term may be written as any other member of its group, and
 * a group with an empty member lets that spelling be left out — but only inside a term, never at
 * its start or end (糖尿病性视网膜病变 → 糖尿病视网膜病变; 增殖性 never becomes 增殖).
 *
 * A term is cut into tokens left to right, taking the longest group member at each position
 * (黄斑区 is one token, not 黄斑 + 区), and the variants are the product of the tokens' options,
 * capped at `MAX_VARIANTS` per term.
 */

export const MAX_VARIANTS = 256;

interface Member {
  text: string;
  group: number;
}

export interface Equivalents {
  groups: string[][];
  /** Non-empty members by first UTF-16 unit, longest first. */
  byFirst: Map<number, Member[]>;
}

/**
 * Merge groups that share a non-empty member (interchangeability is transitive: 黄斑 ~ 黄斑区 and
 * 黄斑 ~ 黄斑中心小凹 make one group). An empty member is not shared: it only marks its own group
 * as droppable.
 */
function mergeGroups(groups: readonly (readonly string[])[]): string[][] {
  const parent = groups.map((_, i) => i);
  const find = (i: number): number => (parent[i] === i ? i : (parent[i] = find(parent[i] as number)));
  const owner = new Map<string, number>();
  groups.forEach((g, i) => {
    for (const m of g) {
      if (m === "") continue;
      const j = owner.get(m);
      if (j === undefined) owner.set(m, i);
      else parent[find(i)] = find(j);
    }
  });
  const merged = new Map<number, Set<string>>();
  groups.forEach((g, i) => {
    const root = find(i);
    let set = merged.get(root);
    if (!set) merged.set(root, (set = new Set()));
    for (const m of g) set.add(m);
  });
  return [...merged.values()].map((set) => [...set]);
}

/** Compile equivalence groups whose members are already normalised. */
export function compileEquivalents(groups: readonly (readonly string[])[]): Equivalents {
  const byFirst = new Map<number, Member[]>();
  const out = mergeGroups(groups);
  out.forEach((members, gi) => {
    for (const m of members) {
      if (m === "") continue;
      const k = m.charCodeAt(0);
      let list = byFirst.get(k);
      if (!list) byFirst.set(k, (list = []));
      list.push({ text: m, group: gi });
    }
  });
  for (const list of byFirst.values()) list.sort((a, b) => b.text.length - a.text.length);
  return { groups: out, byFirst };
}

/** The spellings of one (normalised) term: the term itself first, then its variants. */
export function expandTerm(term: string, eq: Equivalents): string[] {
  if (eq.groups.length === 0) return [term];
  const options: string[][] = [];
  let literal = "";
  let i = 0;
  while (i < term.length) {
    const m = eq.byFirst.get(term.charCodeAt(i))?.find((x) => term.startsWith(x.text, i));
    if (m === undefined) {
      literal += term[i];
      i++;
      continue;
    }
    if (literal !== "") options.push([literal]);
    literal = "";
    const inside = i > 0 && i + m.text.length < term.length;
    const members = (eq.groups[m.group] as string[]).filter((x) => x !== "" || inside);
    // The term's own spelling first, so the first variant is the term as written.
    options.push([m.text, ...members.filter((x) => x !== m.text)]);
    i += m.text.length;
  }
  if (literal !== "") options.push([literal]);
  let variants = [""];
  for (const opts of options) {
    const next: string[] = [];
    for (const v of variants) {
      for (const o of opts) {
        if (next.length >= MAX_VARIANTS) break;
        next.push(v + o);
      }
    }
    variants = next;
  }
  return [...new Set(variants.filter((v) => v.length > 0))];
}
