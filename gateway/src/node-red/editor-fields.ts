/**
 * The editor side of the field specs (issue 9 §2): GET /editor/iomt/fields.js defines
 * `window.iomtFields`, which each node's .html loads with `<script src="iomt/fields.js">` (Node-RED
 * loads such scripts synchronously, before the registerType call below it runs).
 *
 * - `iomtFields.defaults(type)`: the Node-RED `defaults` object built from the spec (value,
 *   required, validate). Validation accepts any `${VAR}` / `${VAR:-default}` value: it is checked
 *   against the gateway's real environment by `check-config` and when the node starts.
 * - `iomtFields.prepare(node)` / `iomtFields.save(node)`: bool fields are drawn in
 *   `<span class="iomt-bool" data-field="NAME">` as a checkbox, or as a text box while the stored
 *   value is a template; `save` writes back the stored value unchanged when the person did not
 *   change it, so opening a node and pressing Done changes nothing. A <select> whose stored value
 *   is a template (or any value not among its options) gets that value as an extra option.
 */
import type { NodeSpec } from '../config/field-spec';
import { NODE_SPECS } from '../config/node-specs';

const CLIENT = String.raw`
(function () {
  var SPECS = __SPECS__;
  var TEMPLATE = /\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}/;
  var TRUE = /^(1|true|yes|on)$/i, FALSE = /^(0|false|no|off)$/i;
  function spec(type) {
    for (var i = 0; i < SPECS.length; i++) if (SPECS[i].type === type) return SPECS[i];
    throw new Error('iomt: no field spec for node type ' + type);
  }
  function isTemplate(v) { return typeof v === 'string' && TEMPLATE.test(v); }
  function checkLiteral(f, v) {
    if (f.type === 'bool') return v === true || v === false || v === undefined || v === '' || (typeof v === 'string' && (isTemplate(v) || TRUE.test(v.trim()) || FALSE.test(v.trim())));
    if (v === undefined || v === null) v = '';
    v = String(v).trim();
    if (isTemplate(v)) return true;
    if (v === '') return !f.required || !!f.when;
    if (f.type === 'port') return /^\d+$/.test(v) && +v >= (f.min === undefined ? 1 : f.min) && +v <= 65535;
    if (f.type === 'int') return /^-?\d+$/.test(v) && (f.min === undefined || +v >= f.min) && (f.max === undefined || +v <= f.max);
    if (f.type === 'enum') return (f.options || []).indexOf(v) >= 0;
    if (f.type === 'host') return /^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(v) || /^[0-9A-Fa-f:.]+$/.test(v);
    if (f.pattern) return new RegExp(f.pattern).test(v);
    return true;
  }
  function defaults(type) {
    var out = {};
    spec(type).fields.forEach(function (f) {
      var d = { value: f.default, validate: function (v) { return checkLiteral(f, v); } };
      if (f.required && !f.when && f.type !== 'bool') d.required = true;
      out[f.name] = d;
    });
    return out;
  }
  function boolWidget(node, f) {
    var host = $('.iomt-bool[data-field="' + f.name + '"]');
    if (!host.length) return;
    host.empty();
    var stored = node[f.name];
    var cb = $('<input type="checkbox" style="width:auto;margin:0 6px 0 0">').attr('id', 'iomt-bool-' + f.name);
    var text = $('<input type="text" style="width:55%">').attr('id', 'iomt-tmpl-' + f.name).attr('placeholder', '$' + '{VARIABLE:-false}');
    var toggle = $('<a href="#" style="margin:0 10px 0 4px;font-size:0.85em"></a>').attr('id', 'iomt-mode-' + f.name);
    host.append(cb, text, toggle);
    function mode(tmpl) {
      cb.toggle(!tmpl);
      text.toggle(tmpl);
      toggle.text(tmpl ? 'use a checkbox' : 'use $' + '{VAR}').attr('title', tmpl ? 'a yes/no box instead of an environment variable' : 'take the value from an environment variable, e.g. $' + '{HL7_IN_TLS:-false}');
      host.attr('data-mode', tmpl ? 'template' : 'checkbox');
    }
    if (isTemplate(stored)) { text.val(stored); mode(true); }
    else {
      cb.prop('checked', stored === true || (typeof stored === 'string' && TRUE.test(stored.trim())));
      mode(false);
    }
    toggle.on('click', function (e) {
      e.preventDefault();
      var tmpl = host.attr('data-mode') !== 'template';
      if (tmpl && !text.val()) text.val('$' + '{VARIABLE:-' + (cb.prop('checked') ? 'true' : 'false') + '}');
      mode(tmpl);
    });
  }
  // fields the stored node does not have, with what the dialog showed for them: left unset on Done
  var UNSET = {};
  function prepare(node) {
    var s = spec(node.type);
    var unset = (UNSET[node.id] = {});
    s.fields.forEach(function (f) {
      if (f.type === 'bool') return boolWidget(node, f);
      if (node[f.name] === undefined && $('#node-input-' + f.name).length) unset[f.name] = $('#node-input-' + f.name).val();
      var sel = $('select#node-input-' + f.name);
      var v = node[f.name];
      if (sel.length && v !== undefined && v !== null && sel.find('option').filter(function () { return this.value === String(v); }).length === 0) {
        sel.append($('<option>').val(String(v)).text(String(v) + (isTemplate(v) ? ' (from the environment)' : ' (not a known value)')));
        sel.val(String(v));
      }
    });
  }
  function save(node) {
    var s = spec(node.type);
    var unset = UNSET[node.id] || {};
    delete UNSET[node.id];
    s.fields.forEach(function (f) {
      if (f.type !== 'bool') {
        // untouched and absent from the stored node: hide the input from Node-RED so it adds nothing
        var el = $('#node-input-' + f.name);
        if (Object.prototype.hasOwnProperty.call(unset, f.name) && el.length && el.val() === unset[f.name]) el.attr('id', 'iomt-unset-' + f.name);
        return;
      }
      var host = $('.iomt-bool[data-field="' + f.name + '"]');
      if (!host.length) return;
      var stored = node[f.name];
      var next;
      if (host.attr('data-mode') === 'template') next = String($('#iomt-tmpl-' + f.name).val() || '').trim();
      else {
        next = $('#iomt-bool-' + f.name).prop('checked');
        // unchanged meaning: keep the stored value exactly (e.g. the string 'false' stays a string,
        // an absent property stays absent)
        if (typeof stored === 'string' && !isTemplate(stored) && (next ? TRUE : FALSE).test(stored.trim())) next = stored;
        if ((stored === undefined || stored === '') && next === (f.default === true)) return;
      }
      if (next === '') next = f.default;
      node[f.name] = next;
    });
  }
  window.iomtFields = { specs: SPECS, spec: spec, defaults: defaults, prepare: prepare, save: save, isTemplate: isTemplate, checkLiteral: checkLiteral };
})();
`;

/** The browser script served at /editor/iomt/fields.js (specs embedded as JSON). */
export function editorFieldsScript(specs: readonly NodeSpec[] = NODE_SPECS): string {
  return CLIENT.replace('__SPECS__', JSON.stringify(specs).replace(/</g, '\\u003c'));
}
