const ENTITIES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/**
 * Escapes `value` for HTML text and for a quoted attribute value (`&`, `<`, `>`, `"`, `'`), so no value can open a
 * tag, end an attribute or start an entity. Use it for every value you put into a custom `html` template.
 */
export function escapeHtml(value: string): string {
  return String(value).replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}
