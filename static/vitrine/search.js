// Photo search: file picker, drag and drop, and paste all submit the same form.
(function () {
  const form = document.getElementById("image-form");
  const input = document.getElementById("image");
  const zone = document.getElementById("dropzone");
  if (!form || !input || !zone) return;
  function submitFile(file) {
    if (!file || !file.type.startsWith("image/")) return;
    const data = new DataTransfer();
    data.items.add(file);
    input.files = data.files;
    form.submit();
  }
  input.addEventListener("change", () => input.files.length && form.submit());
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (e) => { e.preventDefault(); submitFile(e.dataTransfer.files[0]); });
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData || {}).items || []].find((i) => i.type.startsWith("image/"));
    if (item) submitFile(item.getAsFile());
  });
})();
