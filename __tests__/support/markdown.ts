import fs from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');

/** A Markdown file of the repository (`file` relative to its root), for tests that keep docs in step with code. */
export function markdownDoc(file: string): { text: string; tableAfter(heading: string): string[][] } {
  const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
  /** The rows of the first Markdown table after `heading`, as their cells. */
  const tableAfter = (heading: string): string[][] => {
    const start = text.indexOf(`\n${heading}\n`);
    if (start < 0) throw new Error(`${file} has no heading "${heading}"`);
    const lines = text.slice(start).split('\n').slice(1);
    const first = lines.findIndex((l) => l.startsWith('|'));
    const rows: string[][] = [];
    for (const line of lines.slice(first + 2)) {
      if (!line.startsWith('|')) break;
      rows.push(
        line
          .split(/(?<!\\)\|/)
          .slice(1, -1)
          .map((cell) => cell.trim()),
      );
    }
    return rows;
  };
  return { text, tableAfter };
}

/** The names in backticks in a cell. */
export const ticked = (cell: string): string[] => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
